"""Prometheus metrics and the request middleware that feeds them (and the request log).

Each app owns its ``CollectorRegistry`` (never prometheus-client's global one), so two servers
in one process (tests, benchmarks) never mix their figures. Figures that already live
elsewhere (the halls in the live hub, the gateway, the rate limiter, the store) are read when
Prometheus scrapes, not copied on every change: ``Reading`` is gathered by the async /metrics
handler, then ``LiveCollector`` turns it into metric families.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..api.errors import ApiError, Handler, as_api_error
from ..api.requests import ACTOR
from ..queueing import CannotServeToday, HallView, Status
from .logs import REQUEST_ID

log = logging.getLogger("counter_server.requests")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_REQUEST_ID = 64
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)


@dataclass
class Reading:
    """Figures gathered at scrape time."""

    halls: list[HallView] = field(default_factory=list)
    token_counts: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    billing: dict[str, Any] | None = None
    live_connections: int = 0
    live_dropped: int = 0
    live_published: int = 0
    rate_limited: dict[str, int] = field(default_factory=dict)
    store_commits: int = 0
    store_conflicts: int = 0


class LiveCollector(Collector):
    """Metric families of the latest ``Reading``."""

    def __init__(self) -> None:
        self.reading = Reading()

    def collect(self) -> Iterator[Metric]:
        r = self.reading
        tokens = GaugeMetricFamily("counter_server_tokens", "Today's tokens by status and substation",
                                   labels=["substation", "status"])
        per: dict[tuple[str, str], int] = {}
        for hall in r.halls:
            for status in Status:
                per[(hall.substation, status.value)] = 0
        for sid, _counter, status, n in r.token_counts:
            per[(sid, status)] = per.get((sid, status), 0) + n
        for (sid, status), n in sorted(per.items()):
            tokens.add_metric([sid, status], n)
        yield tokens

        waiting = GaugeMetricFamily("counter_server_waiting", "Tokens waiting now",
                                    labels=["substation", "service"])
        estimate = GaugeMetricFamily("counter_server_wait_estimate_seconds",
                                     "Wait estimate for a token issued now (absent when no counter is open)",
                                     labels=["substation", "service", "quantile"])
        counters_open = GaugeMetricFamily("counter_server_counters_open", "Counters open now",
                                          labels=["substation"])
        counters_total = GaugeMetricFamily("counter_server_counters", "Counters in the scenario",
                                           labels=["substation"])
        admission = GaugeMetricFamily("counter_server_admission_enabled",
                                      "1 when admission at the door is on", labels=["substation"])
        daily_cap = GaugeMetricFamily("counter_server_daily_cap", "Ops' daily cap of tokens (when set)",
                                      labels=["substation"])
        issued = GaugeMetricFamily("counter_server_issued_today", "Tokens issued today",
                                   labels=["substation"])
        for hall in r.halls:
            sid = hall.substation
            for service in hall.services:
                waiting.add_metric([sid, service.id], service.waiting)
                if service.estimate.p50_s is not None:
                    estimate.add_metric([sid, service.id, "0.5"], service.estimate.p50_s)
                if service.estimate.p90_s is not None:
                    estimate.add_metric([sid, service.id, "0.9"], service.estimate.p90_s)
            counters_open.add_metric([sid], sum(1 for c in hall.counters if c.open))
            counters_total.add_metric([sid], len(hall.counters))
            admission.add_metric([sid], 1 if hall.admission else 0)
            if hall.daily_cap is not None:
                daily_cap.add_metric([sid], hall.daily_cap)
            issued.add_metric([sid], hall.issued_today)
        yield from (waiting, estimate, counters_open, counters_total, admission, daily_cap, issued)

        yield GaugeMetricFamily("counter_server_live_connections", "Boards and ops pages connected",
                                value=r.live_connections)
        yield CounterMetricFamily("counter_server_live_dropped", "Boards dropped for falling behind",
                                  value=r.live_dropped)
        yield CounterMetricFamily("counter_server_live_published", "Changes published to boards",
                                  value=r.live_published)
        limited = CounterMetricFamily("counter_server_rate_limited", "Requests refused by the rate limit",
                                      labels=["bucket"])
        for bucket, n in sorted(r.rate_limited.items()):
            limited.add_metric([bucket], n)
        yield limited
        yield CounterMetricFamily("counter_server_store_commits", "Commits this process made to the store",
                                  value=r.store_commits)
        yield CounterMetricFamily("counter_server_store_conflicts",
                                  "Changes run again because another replica changed the queue first",
                                  value=r.store_conflicts)
        if r.billing is not None:
            yield from _billing_families(r.billing)


def _billing_families(b: dict[str, Any]) -> Iterator[Metric]:
    health = GaugeMetricFamily("counter_server_billing_state",
                               "Billing as the gateway sees it (1 = current): up, slow (limit below "
                               "its start) or down (breaker not closed)", labels=["state"])
    for name in ("up", "slow", "down"):
        health.add_metric([name], 1 if b["state"] == name else 0)
    yield health
    yield GaugeMetricFamily("counter_server_billing_paused", "1 when ops paused the outbox",
                            value=1 if b["paused"] else 0)
    yield GaugeMetricFamily("counter_server_billing_limit", "Adaptive concurrency limit", value=b["limit"])
    yield GaugeMetricFamily("counter_server_billing_in_flight", "Calls to billing in flight",
                            value=b["in_flight"])
    if b.get("min_rtt_ms") is not None:
        yield GaugeMetricFamily("counter_server_billing_min_rtt_seconds", "No-load round trip to billing",
                                value=b["min_rtt_ms"] / 1000)
    breaker = b["breaker"]
    state = GaugeMetricFamily("counter_server_billing_breaker_state", "Circuit breaker state (1 = current)",
                              labels=["state"])
    for name in ("closed", "open", "half_open"):
        state.add_metric([name], 1 if breaker["state"] == name else 0)
    yield state
    yield CounterMetricFamily("counter_server_billing_breaker_opened", "Times the breaker opened",
                              value=breaker["times_opened"])
    shed = CounterMetricFamily("counter_server_billing_shed", "Calls shed by the limit, by priority",
                               labels=["priority"])
    for priority, n in sorted(b["shed"].items()):
        shed.add_metric([priority], n)
    yield shed
    forwarded = CounterMetricFamily("counter_server_billing_forwarded",
                                    "Outbox forwarding outcomes since start", labels=["outcome"])
    for outcome, n in sorted(b["forwarded"].items()):
        forwarded.add_metric([outcome], n)
    yield forwarded
    yield CounterMetricFamily("counter_server_billing_retry_budget_refused",
                              "Retries refused by the retry budget", value=b["retry_budget_refused"])
    outbox = b["outbox"]
    depth = GaugeMetricFamily("counter_server_outbox_payments", "Payments in the outbox by status",
                              labels=["status"])
    for status in ("queued", "posted", "failed"):
        depth.add_metric([status], outbox[status])
    yield depth
    yield GaugeMetricFamily("counter_server_outbox_oldest_queued_seconds",
                            "Age of the oldest payment not yet posted (0 when none)",
                            value=outbox["oldest_queued_s"] or 0)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries its request's id (the client's own, or the one made for it)."""
    rid = request.get(REQUEST_ID_KEY)
    if rid is not None:
        response.headers.setdefault(REQUEST_ID_HEADER, rid)


def route_of(request: web.Request) -> str:
    """The route's pattern (``/api/v1/tokens/{tid}/{action}``): bounded label values."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


class Metrics:
    """One app's registry, its request metrics, and the collector of live figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("counter_server_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("counter_server_http_request_duration_seconds",
                                 "Time to answer, by route (WebSockets are not timed)",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.refused = Counter("counter_server_admission_refusals",
                               "Tokens refused at the door, by substation and reason",
                               ["substation", "reason"], registry=self.registry)
        self.live = LiveCollector()
        # Request ids need to be unique, not secret: this process's random prefix and a count
        # (a CSPRNG read per request was 6 % of the token path's profile).
        self._id_prefix = secrets.token_hex(4)
        self._id_count = itertools.count(1)
        self.registry.register(self.live)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float | None) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._children[(route, method, status)] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def exposition(self, reading: Reading) -> bytes:
        """The text format with ``reading`` as the live figures (no await between the two, so
        concurrent scrapes never see each other's reading)."""
        self.live.reading = reading
        return generate_latest(self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Give the request an id, time it, count refusals, and log each change it made."""
        rid = request.headers.get(REQUEST_ID_HEADER, "")
        if not rid or len(rid) > MAX_REQUEST_ID or not rid.isascii() or not rid.isprintable():
            rid = f"{self._id_prefix}{next(self._id_count) & 0xFFFFFFFF:08x}"
        request[REQUEST_ID_KEY] = rid
        reset = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status, code, response = 500, None, None
        try:
            response = await handler(request)
            status = response.status
            return response
        except CannotServeToday as exc:
            status, code = 409, exc.code
            self.refused.labels(request.match_info.get("sid", "-"), exc.reason).inc()
            raise
        except ApiError as exc:
            status, code = exc.status, exc.code
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away before the answer
            raise
        except Exception as exc:
            known = as_api_error(exc)
            if known is not None:
                status, code = known.status, known.code
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(request)
            timed = not isinstance(response, web.WebSocketResponse)
            self.observe(route, request.method, status, elapsed if timed else None)
            if request.method != "GET" and log.isEnabledFor(logging.INFO):
                _log_change(request, route, status, code, response, elapsed)
            REQUEST_ID.reset(reset)


def _log_change(request: web.Request, route: str, status: int, code: str | None,
                response: web.StreamResponse | None, elapsed: float) -> None:
    """One line per change request: who, which counter and token, and how it ended."""
    actor = request.get(ACTOR)
    fields: dict[str, Any] = {
        "method": request.method, "route": route, "status": status,
        "ms": round(elapsed * 1000, 2),
        "substation": request.match_info.get("sid") or (actor.substation if actor else None),
        "counter": request.match_info.get("cid") or (actor.counter if actor else None),
        "key": actor.key_id if actor else None,
        "error": code,
    }
    what = f"{request.method} {route} -> {status}"
    kind, found = _answer_of(response)
    if kind == "token":
        # A token taken or booked on a phone is followed by its link, which holds its id: neither
        # is logged (the phone's answer names the substation as an object; its id is enough).
        place = found.get("substation")
        fields.update(token=found.get("number"), token_status=found.get("status"),
                      token_id=found.get("id") if found.get("origin") == "counter" else None,
                      counter=found.get("counter") or fields["counter"],
                      substation=(place.get("id") if isinstance(place, dict) else place) or fields["substation"])
        what = f"{found.get('number')} {found.get('status')}" + (
            f" at {found['counter']}" if found.get("counter") else "")
    elif kind == "payment":
        fields.update(payment=found.get("id"), token_id=found.get("token_id"),
                      payment_status=found.get("status"), amount_paise=found.get("amount_paise"),
                      counter=found.get("counter") or fields["counter"],
                      substation=found.get("substation") or fields["substation"])
        what = f"payment {found.get('status')} at {found.get('counter')}"
    elif "tid" in request.match_info:
        fields["token_id"] = request.match_info["tid"]
    log.info(what, extra=fields)


def _answer_of(response: web.StreamResponse | None) -> tuple[str | None, dict[str, Any]]:
    """("token" | "payment", its JSON) when the answer carries one, else (None, {})."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None, {}
    body = response.body
    if not isinstance(body, bytes) or len(body) > 16_384:
        return None, {}
    for kind in ("token", "payment"):
        if body.startswith(b'{"%s": {' % kind.encode()):
            try:
                return kind, orjson.loads(body)[kind]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return None, {}
    return None, {}
