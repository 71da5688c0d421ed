"""Routes of the phone page: one small page for every step (pick a substation, take a token
or book a slot, follow the token), reading what to show from its URL, and a QR code per
substation for its hall board.

Phones pay for every byte. The page's files are served under URLs carrying a hash of their
content (``/static/q/q.js?v=…``) and cached for a year as immutable; the HTML, which names
those URLs, is never stored, so a new release reaches a phone on its next visit. A repeat visit
costs the HTML and the live figures only."""

from __future__ import annotations

import functools
import hashlib
import html
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import segno
from aiohttp import web
from yarl import URL

from ..api.forwarded import parse_address
from ..appkeys import SETTINGS, TOKENS
from ..pages import SECURITY_HEADERS

PHONE_WEB = Path(str(resources.files("counter_server.phone") / "web"))
# Phones follow their token's own link: it must not leak to other sites through the Referer.
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
IMMUTABLE = "public, max-age=31536000, immutable"
# Asked for without (or with another) hash: a bookmark or an old page; keep it briefly.
UNVERSIONED = "max-age=600"

TYPES = {"q.css": "text/css", "q-fonts.css": "text/css", "q.js": "text/javascript",
         "q-devanagari-400.woff2": "font/woff2"}
# The page's own references to the files above, in the HTML and the font CSS.
REFERENCE = re.compile(r"/static/q/(q\.css|q-fonts\.css|q\.js|q-devanagari-400\.woff2)")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:12]


@functools.cache
def assets() -> dict[str, Asset]:
    """The page's files with their versions; a file that names another names its version, so
    a changed font changes the CSS's version too. Read once per process (package data)."""
    found: dict[str, Asset] = {}
    for name in ("q-devanagari-400.woff2", "q-fonts.css", "q.css", "q.js"):   # referenced first
        body = (PHONE_WEB / name).read_bytes()
        if TYPES[name].startswith("text/"):
            body = _versioned(body.decode("utf-8"), found).encode("utf-8")
        found[name] = Asset(body, TYPES[name], _version(body))
    return found


def _versioned(text: str, known: dict[str, Asset]) -> str:
    return REFERENCE.sub(lambda m: f"{m.group(0)}?v={known[m.group(1)].version}"
                         if m.group(1) in known else m.group(0), text)


@functools.cache
def page_html(scenario_name: str) -> bytes:
    """The page, naming its files' versions and the utility (the scenario's name) on top."""
    text = (PHONE_WEB / "q.html").read_text(encoding="utf-8").replace("{{scenario_name}}", html.escape(scenario_name))
    return _versioned(text, assets()).encode("utf-8")


def _send(body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    """Text goes out gzip-compressed to phones that accept it (the page's 50 KB become about
    15 KB); the woff2 font is compressed already."""
    text = content_type.startswith("text/")
    response = web.Response(body=body, content_type=content_type, charset="utf-8" if text else None,
                            headers=headers)
    if text:
        response.enable_compression()
    return response


async def phone_page(request: web.Request) -> web.Response:
    sid = request.match_info.get("sid")
    if sid is not None:
        request.app[TOKENS].substation(sid)   # unknown id: JSON 404
    return _send(page_html(request.app[SETTINGS].scenario.name), "text/html", PAGE_HEADERS)


async def phone_asset(request: web.Request) -> web.Response:
    asset = assets().get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    current = request.query.get("v") == asset.version
    return _send(asset.body, asset.content_type,
                 {**SECURITY_HEADERS, "Cache-Control": IMMUTABLE if current else UNVERSIONED})


def page_url(request: web.Request, sid: str) -> str:
    """What a hall board's QR code opens: the configured public address, else this server at
    an address it can vouch for (see ``own_origin``), never a Host header taken on trust."""
    base = request.app[SETTINGS].scenario.phones.public_url or own_origin(request)
    return f"{base}/q/{sid}"


def own_origin(request: web.Request) -> str:
    """This server as the request reached it: the Host header when it names the address and port
    the connection came in on (``localhost`` for loopback), else that address itself. Any name
    a client makes up (``Host: evil.example``) gives way to the address it really connected to,
    so a QR code cannot be made to send consumers elsewhere."""
    settings = request.app[SETTINGS]
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple):
        ip, port = parse_address(str(sockname[0])), int(sockname[1])
    else:
        ip, port = parse_address(settings.host), settings.port
    host = str(ip) if ip is not None else settings.host
    try:
        named = URL(f"{request.scheme}://{request.host}")
        if named.host is not None and named.port == port and (
                parse_address(named.host) == ip or (named.host == "localhost" and ip is not None and ip.is_loopback)):
            host = named.host
    except ValueError:
        pass
    return str(URL.build(scheme=request.scheme, host=host, port=port))


def qr_svg(url: str) -> bytes:
    """``url`` as the SVG QR code a hall board shows."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=8, border=2, dark="#0b1320", light="#ffffff",
                                    xmldecl=False)
    return out.getvalue()


async def qr_code(request: web.Request) -> web.Response:
    """An SVG QR code of the substation's phone page, for its hall board (and for printing)."""
    sid = request.match_info["sid"]
    request.app[TOKENS].substation(sid)
    svg = qr_svg(page_url(request, sid))
    # Without a configured address the code depends on the address the request came in on:
    # no shared cache may keep one for everybody.
    shared = bool(request.app[SETTINGS].scenario.phones.public_url)
    return web.Response(body=svg, content_type="image/svg+xml",
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600" if shared else
                                 "private, max-age=3600", **({} if shared else {"Vary": "Host"})})
