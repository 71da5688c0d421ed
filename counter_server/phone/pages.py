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


ASSETS = {"q.html": "text/html", "q.css": "text/css", "q.js": "text/javascript"}


def _compressed(name: str, headers: dict[str, str]) -> web.Response:
    """One of the page's files, gzip-compressed for phones that accept it: on a slow mobile
    link the page's 50 KB become about 15 KB. (A file response would go out uncompressed.)"""
    response = web.Response(body=(PHONE_WEB / name).read_bytes(), content_type=ASSETS[name],
                            charset="utf-8", headers=headers)
    response.enable_compression()
    return response


async def phone_page(request: web.Request) -> web.Response:
    sid = request.match_info.get("sid")
    if sid is not None:
        request.app[TOKENS].substation(sid)   # unknown id: JSON 404
    return _compressed("q.html", PAGE_HEADERS)


async def phone_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "q.html":
        raise web.HTTPNotFound()
    return _compressed(name, {**SECURITY_HEADERS, "Cache-Control": "max-age=600"})


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
    app.router.add_get("/q/t/{link}", phone_page)
    app.router.add_get("/q/{sid}", phone_page)
    app.router.add_get("/q/{sid}/qr.svg", qr_code)
    app.router.add_get("/static/q/{name}", phone_asset)
