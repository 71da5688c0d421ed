"""Thin handlers for ops: the /ops page, reports, today's overview, /metrics, the page's live link,
and plans (the month simulation run from the page)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..api.errors import ApiError
from ..api.live import ops_live
from ..api.requests import ACTOR, actor_of, bearer_key, parse_body
from ..api.schemas import NoBody, PlanRequest
from ..appkeys import GATEWAY, HUB, KEYS, METRICS, OPS, PLANS, RATE_LIMITER, STORE, TOKENS
from ..pages import SECURITY_HEADERS
from ..services import Actor, Forbidden, NotFound, Role
from .metrics import Reading
from .plans import Plan, PlanRunning, PlansUnavailable
from .reports import daily_csv, daily_json, monthly_csv, monthly_json
from .status import alerts_now

OPS_WEB = Path(__file__).resolve().parent / "web"
FORMATS = ("json", "csv")


def _reader(request: web.Request) -> Actor:
    """Reports and metrics are for ops: an admin key, or a read-only board key."""
    actor = actor_of(request)
    if actor.role not in (Role.ADMIN, Role.BOARD):
        raise Forbidden("Reports are for admin and board keys.", role=actor.role.value)
    return actor


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(422, "invalid_field", f"format must be json or csv, not {fmt[:20]!r}.", field="format")
    return fmt


def _csv(text: str, name: str) -> web.Response:
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def ops_page(request: web.Request) -> web.FileResponse:
    """The ops page; it holds no data until the person signs in with an admin key."""
    return web.FileResponse(OPS_WEB / "ops.html", headers=SECURITY_HEADERS)


async def report_daily(request: web.Request) -> web.Response:
    """Per substation and counter for one day, as JSON or CSV."""
    _reader(request)
    ops = request.app[OPS]
    day = ops.parse_day(request.query.get("date"))
    substation = ops.parse_substation(request.query.get("substation"))
    fmt = _format(request)
    report = await ops.daily(day, substation)
    if fmt == "csv":
        return _csv(daily_csv(report), f"report-{day}" + (f"-{substation}" if substation else ""))
    return web.json_response({"report": daily_json(report)})


async def report_cash_up(request: web.Request) -> web.Response:
    """Every counter's cash-up for a day (``?date=``, ``?substation=``): one call for the ops page."""
    actor_of(request).require_admin()
    ops = request.app[OPS]
    day = ops.parse_day(request.query.get("date"))
    substation = ops.parse_substation(request.query.get("substation"))
    return web.json_response({"day": day, "counters": await ops.all_cash_ups(day, substation)})


async def report_monthly(request: web.Request) -> web.Response:
    """One row per day of a month and the month's own figures, as JSON or CSV."""
    _reader(request)
    ops = request.app[OPS]
    month = ops.parse_month(request.query.get("month"))
    substation = ops.parse_substation(request.query.get("substation"))
    fmt = _format(request)
    report = await ops.monthly(month, substation)
    if fmt == "csv":
        return _csv(monthly_csv(report), f"report-{month}" + (f"-{substation}" if substation else ""))
    return web.json_response({"report": monthly_json(report)})


async def overview(request: web.Request) -> web.Response:
    """Today's figures the live channel does not carry: served per counter, turned away."""
    _reader(request)
    return web.json_response(await request.app[OPS].overview())


async def alerts(request: web.Request) -> web.Response:
    """What needs ops now, each with what to do (admin): what the ops channel sends every second."""
    actor_of(request).require_admin()
    app = request.app
    return web.json_response({"alerts": await alerts_now(app[TOKENS], app[HUB], await app[GATEWAY].snapshot())})


async def live_ticket(request: web.Request) -> web.Response:
    """A one-time ticket for the ops page to open the ops channel (admin)."""
    await parse_body(request, NoBody)
    ticket, ttl = request.app[OPS].issue_ticket(actor_of(request))
    return web.json_response({"ticket": ticket, "expires_in_s": ttl,
                              "url": f"/ops/live?ticket={ticket}"}, status=201)


async def ops_live_by_ticket(request: web.Request) -> web.WebSocketResponse:
    """The ops channel (as /api/v1/live) for a browser, signed in by a one-time ticket."""
    actor = request.app[OPS].redeem_ticket(request.query.get("ticket", ""))
    if actor is None:
        raise ApiError(401, "invalid_ticket",
                       "The live ticket is unknown, used or expired; get one from POST /api/v1/ops/live-ticket.")
    request[ACTOR] = actor
    return await ops_live(request)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (Authorization: Bearer with an admin or board key)."""
    header = request.headers.get("Authorization", "")
    key = bearer_key(header)
    actor = await request.app[KEYS].authenticate(key) if key is not None else None
    if actor is None:
        raise ApiError(401, "missing_key" if not header else "invalid_key",
                       "Scrape /metrics with 'Authorization: Bearer KEY' (an admin or board key).",
                       {"WWW-Authenticate": "Bearer"})
    request[ACTOR] = actor
    _reader(request)
    body = request.app[METRICS].exposition(await _reading(request.app))
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def _reading(app: web.Application) -> Reading:
    """Today's figures as they stand; reading them changes nothing (no board is moved on)."""
    tokens, hub = app[TOKENS], app[HUB]
    today = tokens.today()
    limiter = app[RATE_LIMITER]
    return Reading(
        halls=await tokens.current_halls(),
        token_counts=await tokens.token_counts(today),
        billing=await app[GATEWAY].snapshot(),
        live_connections=hub.connections(),
        live_dropped=hub.dropped,
        live_published=hub.published,
        rate_limited={"key": limiter.keys.refused, "address": limiter.addresses.refused},
        store_commits=app[STORE].commits,
        store_conflicts=app[STORE].conflicts,
    )


async def list_plans(request: web.Request) -> web.Response:
    """What a plan may ask for here (the scenario's figures as defaults), and the plans kept."""
    actor_of(request).require_admin()
    plans = request.app[PLANS]
    try:
        limits, unavailable = plans.limits().as_json(), None
    except PlansUnavailable as exc:
        limits, unavailable = None, str(exc)
    running = plans.running()
    return web.json_response({"limits": limits, "unavailable": unavailable,
                              "running": running.id if running else None,
                              "plans": [p.as_json(summary=True) for p in plans.recent()]})


async def post_plan(request: web.Request) -> web.Response:
    """Start a plan (202); one at a time: another while one runs is refused (409 plan_running)."""
    actor_of(request).require_admin()
    body = await parse_body(request, PlanRequest)
    plans = request.app[PLANS]
    try:
        inputs = plans.checked(body.model_dump(exclude_none=True))
        plan = plans.start(inputs)
    except PlansUnavailable as exc:
        raise ApiError(409, "plans_unavailable", str(exc)) from None
    except PlanRunning as exc:
        running = exc.running
        raise ApiError(409, "plan_running",
                       f"A plan is running already ({running.progress:.0%} done): wait for it to "
                       "finish, then run yours.", plan_id=running.id, plan=running.as_json()) from None
    return web.json_response({"plan": plan.as_json()}, status=202)


def _plan(request: web.Request) -> Plan:
    actor_of(request).require_admin()
    plan = request.app[PLANS].get(request.match_info["pid"])
    if plan is None:
        raise NotFound("plan", request.match_info["pid"])
    return plan


async def get_plan(request: web.Request) -> web.Response:
    """A plan: running (with its progress), failed (why) or done (the per-hall table, plot links)."""
    return web.json_response({"plan": _plan(request).as_json()})


async def get_plan_plot(request: web.Request) -> web.Response:
    """One of a finished plan's plots, as PNG."""
    plan = _plan(request)
    name = request.match_info["name"]
    if plan.state == "running":
        raise ApiError(409, "plan_running", f"Plan {plan.id} is still running; its plots come when it is done.",
                       plan_id=plan.id)
    if name not in plan.plots:
        raise ApiError(404, "plot_not_found", f"Plan {plan.id} has no plot {name[:40]!r}; it has: "
                       f"{', '.join(plan.plots) or 'none'}.", plots=list(plan.plots))
    return web.Response(body=plan.plots[name], content_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})
