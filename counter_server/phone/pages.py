"""Routes of the phone page: one small page for every step (pick a substation, take a token
or book a slot, follow the token), reading what to show from its URL, and a QR code per
substation for its hall board."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import segno
from aiohttp import web

from ..appkeys import SETTINGS, TOKENS
from ..pages import SECURITY_HEADERS

PHONE_WEB = Path(str(resources.files("counter_server.phone") / "web"))
# Phones follow their token's own link: it must not leak to other sites through the Referer.
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}


async def phone_page(request: web.Request) -> web.FileResponse:
    sid = request.match_info.get("sid")
    if sid is not None:
        request.app[TOKENS].substation(sid)   # unknown id: JSON 404
    return web.FileResponse(PHONE_WEB / "q.html", headers=PAGE_HEADERS)


def page_url(request: web.Request, sid: str) -> str:
    """What a hall board's QR code opens: the configured public address, else this server as
    the board reached it."""
    base = request.app[SETTINGS].scenario.phones.public_url or f"{request.scheme}://{request.host}"
    return f"{base}/q/{sid}"


async def qr_code(request: web.Request) -> web.Response:
    """An SVG QR code of the substation's phone page, for its hall board (and for printing)."""
    sid = request.match_info["sid"]
    request.app[TOKENS].substation(sid)
    code = segno.make(page_url(request, sid), error="m")
    out = io.BytesIO()
    code.save(out, kind="svg", scale=8, border=2, dark="#0b1320", light="#ffffff", xmldecl=False)
    return web.Response(body=out.getvalue(), content_type="image/svg+xml",
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})


def setup_phone_pages(app: web.Application) -> None:
    app.router.add_get("/q", phone_page)
    app.router.add_get("/q/t/{tid}", phone_page)
    app.router.add_get("/q/{sid}", phone_page)
    app.router.add_get("/q/{sid}/qr.svg", qr_code)
    app.router.add_static("/static/q/", PHONE_WEB, name="phone_static")
