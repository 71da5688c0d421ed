"""Thin handlers for ops' webhook endpoints: register, list, remove, enable again."""

from __future__ import annotations

from aiohttp import web

from ..api.requests import actor_of, parse_body
from ..api.schemas import NewWebhook, NoBody
from ..appkeys import SETTINGS, WEBHOOKS
from ..shapes import webhook_json


async def post_webhook(request: web.Request) -> web.Response:
    """Register an endpoint; the answer holds its secret, shown this once."""
    body = await parse_body(request, NewWebhook)
    hook = await request.app[WEBHOOKS].register(actor_of(request), body.url, list(body.events), body.secret)
    return web.json_response({"webhook": webhook_json(hook, request.app[SETTINGS].scenario, with_secret=True)},
                             status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    hooks = await request.app[WEBHOOKS].list(actor_of(request))
    scenario = request.app[SETTINGS].scenario
    return web.json_response({"webhooks": [webhook_json(h, scenario) for h in hooks]})


async def delete_webhook(request: web.Request) -> web.Response:
    await request.app[WEBHOOKS].remove(actor_of(request), request.match_info["wid"])
    return web.json_response({"removed": request.match_info["wid"]})


async def enable_webhook(request: web.Request) -> web.Response:
    await parse_body(request, NoBody)
    hook = await request.app[WEBHOOKS].enable(actor_of(request), request.match_info["wid"])
    return web.json_response({"webhook": webhook_json(hook, request.app[SETTINGS].scenario)})
