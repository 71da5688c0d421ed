"""Pages served by the counter server: the hall board (static files from display_board/web)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from .appkeys import TOKENS

BOARD_WEB = Path(str(resources.files("display_board") / "web"))

# Pages load only their own files and talk only to this server. connect-src 'self' is the
# origin the page was reached under (whatever host was typed), and in CSP Level 3 it covers
# that origin's ws: and wss: too (tests/test_access_holes.py checks it in Chromium), so no
# page can open a WebSocket to any other host.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'self'; font-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def board_page(request: web.Request) -> web.FileResponse:
    """The hall board of one substation; the page reads the substation id from its URL."""
    request.app[TOKENS].substation(request.match_info["sid"])  # unknown id: JSON 404
    return web.FileResponse(BOARD_WEB / "board.html", headers=SECURITY_HEADERS)


@web.middleware
async def page_headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith(("/board", "/static/", "/q")):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
