"""Thin handlers: parse, call the TokenService, shape the answer."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..appkeys import GATEWAY, OPS, PAYMENTS, SETTINGS, STARTING, STORE, TOKENS
from ..queueing import Action
from ..store import STORE_UNAVAILABLE, Applied
from ..shapes import hall_json, payment_json, substation_json, token_json
from .errors import ApiError, error_response
from .requests import actor_of, idempotency_of, parse_body, public
from .schemas import (
    ACCOUNT,
    AdmissionSettings,
    IssueToken,
    LeaseRequest,
    NoBody,
    OfflineToken,
    RecordPayment,
    ResubmitPayment,
    Transfer,
)

TOKEN_ACTIONS = [a.value for a in Action if a is not Action.CALL]


def _token_answer(request: web.Request, applied: Applied, status: int = 200) -> web.Response:
    scenario = request.app[SETTINGS].scenario
    token = token_json(applied.token, scenario, applied.estimate) if applied.token is not None else None
    headers = {"Idempotent-Replayed": "true"} if applied.replayed else None
    return web.json_response({"token": token}, status=status, headers=headers)


@public
async def healthz(request: web.Request) -> web.Response:
    """Liveness, and the billing server's state as the gateway sees it."""
    gateway = request.app[GATEWAY]
    billing = {"state": gateway.health(), "simulated": gateway.simulated}
    if gateway.simulated:
        billing["warning"] = "SIMULATED billing server: payments do not reach the real one."
    return web.json_response({"status": "ok", "billing": billing})


def not_ready(reason: str, message: str) -> web.Response:
    """503 with the reason: what /readyz answers while this replica cannot serve (and every
    route while it waits for its store at start)."""
    return error_response(503, "not_ready", message, {"Retry-After": "1"}, reason=reason)


async def readyz(request: web.Request) -> web.Response:
    """Readiness, for balancers and orchestrators: 200 only while this replica can serve, i.e.
    its store answers and it follows the shared event stream (its boards see every change).
    /healthz stays "the process lives", so a replica cut off from Redis is taken out of
    rotation, not restarted."""
    store = request.app[STORE]
    try:
        await asyncio.wait_for(store.ping(), request.app[SETTINGS].ready_timeout_s)
    except (*STORE_UNAVAILABLE, TimeoutError) as exc:
        return not_ready("store_unreachable", f"the store does not answer: {exc or 'timed out'}")
    if not store.following:
        return not_ready("events_not_followed", "the store answers, but this replica is not "
                                                "following its event stream (yet)")
    return web.json_response({"status": "ready"})


async def healthz_starting(request: web.Request) -> web.Response:
    """Liveness while the replica waits for its store at start: alive, not ready."""
    return web.json_response({"status": "ok", "ready": False})


async def not_ready_starting(request: web.Request) -> web.Response:
    """Every other route (and /readyz) while the replica waits for its store at start."""
    return not_ready("store_unreachable", request.app[STARTING].message())


async def list_substations(request: web.Request) -> web.Response:
    scenario = request.app[SETTINGS].scenario
    counts = await request.app[TOKENS].waiting_counts()
    return web.json_response({
        "substations": [
            substation_json(s, scenario, counts.get(s.id, 0)) for s in scenario.substations.values()
        ]
    })


async def issue_token(request: web.Request) -> web.Response:
    body = await parse_body(request, IssueToken)
    applied = await request.app[TOKENS].issue(
        actor_of(request),
        request.match_info["sid"],
        body.service,
        body.priority,
        idem=await idempotency_of(request),
    )
    return _token_answer(request, applied, status=201)


async def substation_queue(request: web.Request) -> web.Response:
    scenario = request.app[SETTINGS].scenario
    sid = request.match_info["sid"]
    snapshot = await request.app[TOKENS].queue(sid)
    return web.json_response({
        "substation": sid,
        "tokens": [token_json(t, scenario, snapshot.estimates.get(t.id))
                   for t in snapshot.at_counters + snapshot.waiting],
        "waiting": len(snapshot.waiting),
        "hall": hall_json(snapshot.hall, scenario),
    })


async def call_next(request: web.Request) -> web.Response:
    await parse_body(request, NoBody)
    applied = await request.app[TOKENS].call_next(
        actor_of(request), request.match_info["cid"], idem=await idempotency_of(request)
    )
    return _token_answer(request, applied)


async def token_action(request: web.Request) -> web.Response:
    name = request.match_info["action"]
    if name not in TOKEN_ACTIONS:
        raise ApiError(404, "unknown_action", f"No token action {name!r}.", actions=TOKEN_ACTIONS)
    action = Action(name)
    to_service = to_counter = None
    if action is Action.TRANSFER:
        body = await parse_body(request, Transfer)
        to_service, to_counter = body.service, body.counter
    else:
        await parse_body(request, NoBody)
    applied = await request.app[TOKENS].act(
        actor_of(request),
        request.match_info["tid"],
        action,
        to_service=to_service,
        to_counter=to_counter,
        idem=await idempotency_of(request),
    )
    return _token_answer(request, applied)


async def get_token(request: web.Request) -> web.Response:
    token, estimate = await request.app[TOKENS].get(request.match_info["tid"])
    return web.json_response({"token": token_json(token, request.app[SETTINGS].scenario, estimate)})


async def counter_open_state(request: web.Request) -> web.Response:
    """POST /counters/{cid}/open or /close: a cashier for its own counter, or an admin."""
    open_ = request.match_info["state"] == "open"
    await parse_body(request, NoBody)
    cid = request.match_info["cid"]
    await request.app[TOKENS].set_counter_open(
        actor_of(request), cid, open_, idem=await idempotency_of(request))
    return web.json_response({"counter": {"id": cid, "open": open_}})


async def put_admission(request: web.Request) -> web.Response:
    """Ops: switch admission at the door and set the daily cap of one substation."""
    body = await parse_body(request, AdmissionSettings)
    sid = request.match_info["sid"]
    await request.app[TOKENS].set_admission(actor_of(request), sid, body.admission, body.daily_cap)
    return await get_admission(request)


async def get_admission(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    hall, turned_away = await request.app[TOKENS].admission(sid)
    return web.json_response({"substation": sid, "admission": hall.admission,
                              "daily_cap": hall.daily_cap, "issued_today": hall.issued_today,
                              "turned_away_today": turned_away})


async def post_payment(request: web.Request) -> web.Response:
    """Record a payment: durable at once (202 with a provisional receipt), posted later."""
    body = await parse_body(request, RecordPayment)
    payment, replayed = await request.app[PAYMENTS].record(
        actor_of(request), body.token_id, body.account, body.amount_paise, body.mode,
        part=body.part, idem=await idempotency_of(request))
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return web.json_response({"payment": payment_json(payment, request.app[SETTINGS].scenario)},
                             status=202, headers=headers)


async def get_payment(request: web.Request) -> web.Response:
    payment = await request.app[PAYMENTS].get(actor_of(request), request.match_info["pid"])
    return web.json_response({"payment": payment_json(payment, request.app[SETTINGS].scenario)})


async def list_payments(request: web.Request) -> web.Response:
    """The failed-payments worklist (``?status=failed``, the one list there is)."""
    status = request.query.get("status")
    if status != "failed":
        raise ApiError(400, "invalid_query", "List payments with ?status=failed: the worklist of "
                       "payments billing refused.", field="status")
    found = await request.app[PAYMENTS].failed(actor_of(request))
    scenario = request.app[SETTINGS].scenario
    return web.json_response({"payments": [payment_json(p, scenario) for p in found]})


async def resubmit_payment(request: web.Request) -> web.Response:
    body = await parse_body(request, ResubmitPayment)
    payment = await request.app[PAYMENTS].resubmit(actor_of(request), request.match_info["pid"], body.account)
    return web.json_response({"payment": payment_json(payment, request.app[SETTINGS].scenario)})


async def refund_payment(request: web.Request) -> web.Response:
    await parse_body(request, NoBody)
    payment = await request.app[PAYMENTS].refund(actor_of(request), request.match_info["pid"])
    return web.json_response({"payment": payment_json(payment, request.app[SETTINGS].scenario)})


async def counter_cash_up(request: web.Request) -> web.Response:
    """A counter's payments of a day (``?date=``, today by default), as its drawer is counted."""
    ops = request.app[OPS]
    day = ops.parse_day(request.query.get("date"))
    return web.json_response({"cash_up": await ops.cash_up(actor_of(request), request.match_info["cid"], day)})


async def me(request: web.Request) -> web.Response:
    """Who this key belongs to: a kiosk learns its counter from it."""
    actor = actor_of(request)
    return web.json_response({"key": actor.key_id, "role": actor.role.value, "counter": actor.counter,
                              "substation": actor.substation})


async def post_lease(request: web.Request) -> web.Response:
    body = await parse_body(request, LeaseRequest)
    cid = request.match_info["cid"]
    lease = await request.app[TOKENS].lease_numbers(actor_of(request), cid, body.service, body.size,
                                                    idem=await idempotency_of(request))
    return web.json_response({"lease": {
        "id": lease.id, "counter": lease.counter, "service": lease.service,
        "day": request.app[TOKENS].today(), "numbers": lease.numbers()}}, status=201)


async def post_offline_token(request: web.Request) -> web.Response:
    body = await parse_body(request, OfflineToken)
    applied = await request.app[TOKENS].issue_offline(
        actor_of(request), request.match_info["cid"], body.lease_id, body.number, body.priority,
        body.issued_at.timestamp(), idem=await idempotency_of(request))
    return _token_answer(request, applied, status=201)


async def get_bill(request: web.Request) -> web.Response:
    """A consumer's bill, through the gateway's cache (stale while billing is down)."""
    actor_of(request).require_writer()
    account = request.match_info["account"]
    if not ACCOUNT.match(account):
        raise ApiError(422, "invalid_field", "account: 4-24 letters, digits or dashes.", field="account")
    cached = await request.app[GATEWAY].bill(account)
    return web.json_response({"bill": cached.value, "stale": cached.stale,
                              "age_s": round(cached.age_s, 1)})


async def ops_billing(request: web.Request) -> web.Response:
    """Ops: the gateway's limit, in flight, breaker, shed counts and outbox."""
    actor_of(request).require_admin()
    return web.json_response({"billing": await request.app[GATEWAY].snapshot()})


async def ops_billing_pause(request: web.Request) -> web.Response:
    """Ops: pause or resume forwarding payments (they keep queueing durably meanwhile)."""
    actor_of(request).require_admin()
    await parse_body(request, NoBody)
    request.app[OPS].pause_forwarding(actor_of(request), request.match_info["state"] == "pause")
    return await ops_billing(request)
