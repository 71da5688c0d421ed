"""The OpenAPI 3 document of the REST API, built once from the route table and body models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from .. import __version__
from ..appkeys import PLANS
from ..ops.plans import PlansUnavailable
from ..live.hub import SCHEMA_VERSION
from ..services.payments import PAYMENT_WINDOW_AFTER_DONE_S
from .handlers import TOKEN_ACTIONS

MOVES_WITHOUT_BODY = [a for a in TOKEN_ACTIONS if a != "transfer"]
from .requests import public
from .schemas import (
    ACCOUNT_PATTERN,
    DATE_PATTERN,
    ID_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    MONTH_PATTERN,
    AdmissionSettings,
    AskSms,
    BookSlot,
    IssueToken,
    LeaseRequest,
    NewWebhook,
    NoBody,
    OfflineToken,
    PlanRequest,
    PublishSlots,
    RecordPayment,
    ResubmitPayment,
    TakeToken,
    Transfer,
)

if TYPE_CHECKING:
    from loadtests.capacity.plan import PlanLimits

ERROR = {"$ref": "#/components/schemas/Error"}
TOKEN_ANSWER = {"$ref": "#/components/schemas/TokenAnswer"}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers of a route: the ones named, and the two any route may give (the rate
    limit stands before every route; the store behind nearly all of them may be away)."""
    text = {
        400: "Malformed request (bad JSON, bad Idempotency-Key)",
        401: "No key, or an unknown or revoked key",
        403: "The key's role may not do this",
        404: "Unknown id",
        409: "Illegal move for the token's state; lists the allowed moves",
        413: "Body too large",
        408: "The body did not arrive in time",
        415: "Body is not JSON",
        422: "A field is wrong; names the field",
        429: "Too many requests from this client; Retry-After says when to retry",
        503: "Overloaded, or the store cannot answer now; Retry-After says when to retry",
    }
    return {str(s): _answer(text[s], ERROR) for s in sorted({*statuses, 429, 503})}


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": IDEMPOTENCY_KEY_PATTERN},
    "description": "A retry with the same key returns the first answer and changes nothing. "
                   "1-200 printable ASCII characters, no space at either end.",
}


SINCE = {
    "name": "since", "in": "query", "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
    "description": "The last seq the board saw: missed deltas follow, or a fresh snapshot.",
}


REPORT_FORMAT = {
    "name": "format", "in": "query", "required": False,
    "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
}


def _path(name: str, pattern: str = ID_PATTERN, **schema: Any) -> dict[str, Any]:
    """A path parameter; an id unless said otherwise. One that does not match is refused
    (404: no such one; 400 or 422 where the route says which field is wrong)."""
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": pattern, **schema}}


# The handshake a WebSocket route needs, as aiohttp checks it: without it, 400.
WEBSOCKET_HEADERS = [
    {"name": "Upgrade", "in": "header", "required": True,
     "schema": {"type": "string", "pattern": "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$"}},
    {"name": "Connection", "in": "header", "required": True,
     "schema": {"type": "string", "pattern": "^[Uu][Pp][Gg][Rr][Aa][Dd][Ee]$"}},
    {"name": "Sec-WebSocket-Version", "in": "header", "required": True,
     "schema": {"type": "string", "enum": ["13", "8", "7"]}},
    {"name": "Sec-WebSocket-Key", "in": "header", "required": True,
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"},
     "description": "16 random bytes in base64."},
]
# A phone's link to its token: the token's id, a dot, and the server's 22-character MAC.
LINK_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}\.[A-Za-z0-9_\-]{22}$"
DAY = {"type": "string", "format": "date", "pattern": DATE_PATTERN}


def _body_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """JSON Schemas of request bodies, their shared definitions lifted into components."""
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def build_openapi(plans: PlanLimits | None = None) -> dict[str, Any]:
    """The document; ``plans``: this server's scenario's halls and month, which bound a plan's
    body (None: plans cannot run here, and the body is given without them)."""
    mutating = _errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503)
    paths: dict[str, Any] = {
        "/healthz": {"get": {
            "summary": "Liveness", "security": [],
            "responses": {"200": _answer("Up", {"type": "object"})},
        }},
        "/readyz": {"get": {
            "summary": "Readiness: the store answers and its event stream is followed",
            "security": [],
            "responses": {"200": _answer("Ready", {"type": "object"}),
                          "503": _answer("Not ready; the error's reason says why", ERROR)},
        }},
        "/api/v1/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": _answer("OpenAPI 3 document", {"type": "object"}),
                          "429": _errors(429)["429"]},
        }},
        "/api/v1/substations": {"get": {
            "summary": "Substations with their services, counters and waiting count",
            "responses": {"200": _answer("Substations", {"type": "object"}), **_errors(401)},
        }},
        "/api/v1/substations/{sid}/tokens": {"post": {
            "summary": "Issue a token",
            "parameters": [_path("sid"), IDEMPOTENCY],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/IssueToken"}}}},
            "responses": {"201": _answer("The new token", TOKEN_ANSWER), **mutating},
        }},
        "/api/v1/substations/{sid}/queue": {"get": {
            "summary": "Tokens at counters, then waiting tokens in call order",
            "parameters": [_path("sid")],
            "responses": {"200": _answer("Queue", {"type": "object"}), **_errors(401, 404)},
        }},
        "/api/v1/counters/{cid}/next": {"post": {
            "summary": "Call the next token for this counter (token null when nobody waits)",
            "parameters": [_path("cid"), IDEMPOTENCY],
            "responses": {"200": _answer("Called token or null", TOKEN_ANSWER), **mutating},
        }},
        "/api/v1/counters/{cid}/{state}": {"post": {
            "summary": "Open or close a counter (closing one that holds a token is refused)",
            "parameters": [_path("cid"),
                           {"name": "state", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["open", "close"]}},
                           IDEMPOTENCY],
            "responses": {"200": _answer("The counter's state", {"type": "object"}), **mutating},
        }},
        "/api/v1/substations/{sid}/live": {"get": {
            "summary": "WebSocket: one hall's snapshot, then deltas (see x-live-messages)",
            "security": [],
            "parameters": [_path("sid"), SINCE, *WEBSOCKET_HEADERS],
            "responses": {"101": {"description": "Switching to WebSocket"}, **_errors(400, 403, 404)},
        }},
        "/api/v1/live": {"get": {
            "summary": "WebSocket: every hall, for ops (see x-live-messages)",
            "parameters": [SINCE, *WEBSOCKET_HEADERS],
            "responses": {"101": {"description": "Switching to WebSocket"}, **_errors(400, 401, 403)},
        }},
        "/api/v1/me": {"get": {
            "summary": "The calling key's role, counter and substation",
            "responses": {"200": _answer("Who", {"type": "object"}), **_errors(401)},
        }},
        "/api/v1/counters/{cid}/leases": {"post": {
            "summary": "Set aside numbers for the counter to issue while offline",
            "parameters": [_path("cid"), IDEMPOTENCY],
            "requestBody": _body("LeaseRequest"),
            "responses": {"201": _answer("The lease and its numbers", {"type": "object"}), **mutating},
        }},
        "/api/v1/counters/{cid}/offline-tokens": {"post": {
            "summary": "Reconcile a token issued from a lease while offline",
            "parameters": [_path("cid"), IDEMPOTENCY],
            "requestBody": _body("OfflineToken"),
            "responses": {"201": _answer("The token", TOKEN_ANSWER), **mutating},
        }},
        "/api/v1/counters/{cid}/cash-up": {"get": {
            "summary": "A counter's payments of a day as its drawer is counted: taken (by mode), "
                       "posted, pending, failed, refunded (by mode), and what the drawer should "
                       "hold (in_drawer: cash, cheques, drafts) (its cashier, or an admin)",
            "parameters": [_path("cid"), {"name": "date", "in": "query", "required": False, "schema": DAY,
                                          "description": "YYYY-MM-DD; left out: today"}],
            "responses": {"200": _answer("Cash-up", {"type": "object"}), **_errors(400, 401, 403, 404, 422)},
        }},
        "/api/v1/payments": {"get": {
            "summary": "The worklist of payments billing refused for good (?status=failed); a "
                       "cashier sees its own counter's",
            "parameters": [{"name": "status", "in": "query", "required": True,
                            "schema": {"type": "string", "enum": ["failed"]}}],
            "responses": {"200": _answer("Failed payments, oldest first", {"type": "object"}),
                          **_errors(400, 401, 403)},
        }, "post": {
            "summary": "Record a payment: durable at once, forwarded to billing later",
            "parameters": [IDEMPOTENCY],
            "requestBody": _body("RecordPayment"),
            "responses": {"202": _answer("Queued payment with a provisional receipt", {"type": "object"}),
                          **mutating,
                          "409": _answer(
                              "already_paid: the token has a payment (a token takes one, or several "
                              "marked part); names the first receipt. token_not_at_counter: the token "
                              "is not called or being served at its counter, nor finished there within "
                              f"the last {PAYMENT_WINDOW_AFTER_DONE_S // 60} minutes; `reason` says which "
                              "(not_at_counter, "
                              "finished_too_long_ago, not_served)", ERROR)},
        }},
        "/api/v1/payments/{pid}": {"get": {
            "summary": "A payment: queued, posted, failed (with the reason, also in words) or refunded",
            "parameters": [_path("pid")],
            "responses": {"200": _answer("Payment", {"type": "object"}), **_errors(401, 403, 404)},
        }},
        "/api/v1/payments/{pid}/resubmit": {"post": {
            "summary": "Send a failed payment to billing again, its account corrected if given",
            "parameters": [_path("pid")],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ResubmitPayment"}}}},
            "responses": {"200": _answer("The payment, queued again", {"type": "object"}), **mutating,
                          "409": _answer("payment_not_failed: only a failed payment is resubmitted", ERROR)},
        }},
        "/api/v1/payments/{pid}/refund": {"post": {
            "summary": "Record that a failed payment's cash went back to the consumer",
            "parameters": [_path("pid")],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NoBody"}}}},
            "responses": {"200": _answer("The payment, refunded", {"type": "object"}), **mutating,
                          "409": _answer("payment_not_failed: only a failed payment is refunded", ERROR)},
        }},
        "/api/v1/bills/{account}": {"get": {
            "summary": "A consumer's bill through the gateway's cache (stale while billing is down)",
            "parameters": [_path("account", ACCOUNT_PATTERN)],
            "responses": {"200": _answer("Bill, stale flag and age", {"type": "object"}),
                          **_errors(401, 403, 404, 422),
                          "503": _answer("Billing cannot answer and nothing is cached", ERROR)},
        }},
        "/api/v1/ops/billing": {"get": {
            "summary": "Ops: gateway limit, in flight, breaker, shed counts, outbox (admin)",
            "responses": {"200": _answer("Gateway state", {"type": "object"}), **_errors(401, 403)},
        }},
        "/api/v1/ops/billing/{state}": {"post": {
            "summary": "Ops: pause or resume forwarding payments (admin)",
            "parameters": [{"name": "state", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["pause", "resume"]}}],
            "responses": {"200": _answer("Gateway state", {"type": "object"}),
                          **_errors(400, 401, 403, 404, 415, 422)},
        }},
        "/api/v1/ops/substations/{sid}/admission": {
            "get": {
                "summary": "Admission at the door: switch, daily cap, issued and turned away today",
                "parameters": [_path("sid")],
                "responses": {"200": _answer("Settings", {"type": "object"}), **_errors(401, 404)},
            },
            "put": {
                "summary": "Ops: switch admission and set the daily cap (admin)",
                "parameters": [_path("sid")],
                "requestBody": _body("AdmissionSettings"),
                "responses": {"200": _answer("Settings", {"type": "object"}), **mutating},
            },
        },
        "/api/v1/reports/cash-up": {"get": {
            "summary": "Every counter's cash-up for a day: taken (by mode), posted, pending, failed, "
                       "refunded (by mode), in_drawer (admin)",
            "parameters": [
                {"name": "date", "in": "query", "required": False, "schema": DAY,
                 "description": "YYYY-MM-DD; left out: today"},
                {"name": "substation", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": ID_PATTERN}, "description": "One substation; left out: all"},
            ],
            "responses": {"200": _answer("The day and each counter's cash-up", {"type": "object"}),
                          **_errors(400, 401, 403, 404, 422)},
        }},
        "/api/v1/reports/daily": {"get": {
            "summary": "Daily report per substation and counter: issued, served, no-shows, cancelled, "
                       "turned away, waits, service times, busiest hour, served within 15/30 min, "
                       "payments (admin or board key)",
            "parameters": [
                {"name": "date", "in": "query", "required": False, "schema": DAY,
                 "description": "YYYY-MM-DD, 2000-01-01 to 2099-12-31; left out: today"},
                {"name": "substation", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": ID_PATTERN},
                 "description": "One substation; left out: all"},
                REPORT_FORMAT,
            ],
            "responses": {"200": {"description": "The report", "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}}}}, **_errors(401, 403, 404, 422)},
        }},
        "/api/v1/reports/monthly": {"get": {
            "summary": "Monthly report: each day's totals and the month's pooled figures (admin or board key)",
            "parameters": [
                {"name": "month", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": MONTH_PATTERN},
                 "description": "YYYY-MM, 2000-01 to 2099-12; left out: this month"},
                {"name": "substation", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": ID_PATTERN},
                 "description": "One substation; left out: all"},
                REPORT_FORMAT,
            ],
            "responses": {"200": {"description": "The report", "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}}}}, **_errors(401, 403, 404, 422)},
        }},
        "/api/v1/ops/overview": {"get": {
            "summary": "Ops: today's tokens by status per substation, served and no-shows per counter, "
                       "turned away (admin or board key)",
            "responses": {"200": _answer("Overview", {"type": "object"}), **_errors(401, 403)},
        }},
        "/api/v1/ops/alerts": {"get": {
            "summary": "Ops: what needs acting on now, each with what to do (admin): people waiting "
                       "with no counter open for their service, a token called and not started for "
                       "5 min, billing down or its breaker open, the outbox paused or its oldest "
                       "payment 2 min old (15 min: critical). The ops channel sends the same list "
                       "every second as {\"type\": \"alerts\"}",
            "responses": {"200": _answer("Alerts", {"type": "object", "properties": {"alerts": {
                "type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "level": {"type": "string", "enum": ["critical", "warning"]},
                    "kind": {"type": "string", "enum": ["billing_down", "outbox_paused", "outbox_old",
                                                        "hall_unstaffed", "service_unserved",
                                                        "called_not_started"]},
                    "title": {"type": "string"}, "action": {"type": "string"},
                    "substation": {"type": ["string", "null"]}, "service": {"type": ["string", "null"]},
                    "counter": {"type": ["string", "null"]}, "age_s": {"type": ["number", "null"]}}}}}}),
                **_errors(401, 403)},
        }},
        "/api/v1/ops/live-ticket": {"post": {
            "summary": "Ops: a one-time ticket (30 s) to open the ops channel from a browser at "
                       "/ops/live?ticket=T, since a browser WebSocket cannot send Authorization (admin)",
            "responses": {"201": _answer("Ticket", {"type": "object"}), **_errors(401, 403)},
        }},
        "/api/v1/ops/webhooks": {
            "post": {
                "summary": "Ops: register a webhook endpoint (Standard Webhooks, signed); the answer "
                           "shows its secret this once (admin). See docs/webhooks.md",
                "requestBody": _body("NewWebhook"),
                "responses": {"201": _answer("The endpoint, with its secret", {"type": "object"}), **mutating},
            },
            "get": {
                "summary": "Ops: the endpoints, each with its state and last deliveries, never the secret (admin)",
                "responses": {"200": _answer("Endpoints", {"type": "object"}), **_errors(401, 403)},
            },
        },
        "/api/v1/ops/webhooks/{wid}": {"delete": {
            "summary": "Ops: remove an endpoint (admin)",
            "parameters": [_path("wid")],
            "responses": {"200": _answer("Removed", {"type": "object"}), **mutating},
        }},
        "/api/v1/ops/webhooks/{wid}/enable": {"post": {
            "summary": "Ops: enable a disabled endpoint again; deliveries resume where it stopped (admin)",
            "parameters": [_path("wid")],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NoBody"}}}},
            "responses": {"200": _answer("The endpoint", {"type": "object"}), **mutating},
        }},
        "/api/v1/tokens/{tid}": {"get": {
            "summary": "One token",
            "parameters": [_path("tid")],
            "responses": {"200": _answer("Token", TOKEN_ANSWER), **_errors(401, 404)},
        }},
        "/api/v1/tokens/{tid}/transfer": {"post": {
            "summary": "Transfer a token to another service, another counter, or both",
            "parameters": [_path("tid"), IDEMPOTENCY],
            "requestBody": _body("Transfer"),
            "responses": {"200": _answer("The token after the move", TOKEN_ANSWER), **mutating},
        }},
        "/api/v1/tokens/{tid}/{action}": {"post": {
            "summary": "Move a token through its lifecycle (transfer has its own route, with a body)",
            "parameters": [
                _path("tid"),
                {"name": "action", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": MOVES_WITHOUT_BODY}},
                IDEMPOTENCY,
            ],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NoBody"}}},
                "description": "None, or an empty object."},
            "responses": {"200": _answer("The token after the move", TOKEN_ANSWER), **mutating},
        }},
        **_phone_paths(mutating),
        **_plan_paths(plans),
    }
    token_props = {name: {"type": ["string", "null"]} for name in (
        "id", "number", "substation", "service", "priority", "status", "counter",
        "target_counter", "issued_at", "called_at", "started_at", "finished_at", "day")}
    token_props.update({n: {"type": ["string", "null"]} for n in ("origin", "slot_at", "account_hint")})
    token_props.update({n: {"type": "integer"} for n in ("recalls", "requeues", "transfers")})
    token_props["estimate"] = {"anyOf": [{"$ref": "#/components/schemas/Estimate"}, {"type": "null"}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cash counter queue service", "version": __version__,
                 "description": "Live board messages are described in docs/live-messages.md."},
        "x-live-messages": {"schema_version": SCHEMA_VERSION,
                            "types": ["snapshot", "delta", "heartbeat"],
                            "document": "docs/live-messages.md"},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **_body_schemas(IssueToken, Transfer, NoBody, RecordPayment, ResubmitPayment, LeaseRequest, OfflineToken,
                                AdmissionSettings, TakeToken, BookSlot, PublishSlots, NewWebhook, AskSms),
                "PlanRequest": _plan_request(plans),
                "Token": {"type": "object", "properties": token_props},
                "Estimate": {"type": "object", "properties": {
                    "p50_s": {"type": ["number", "null"]}, "p90_s": {"type": ["number", "null"]},
                    "ahead": {"type": "integer"}, "counters": {"type": "integer"}}},
                "TokenAnswer": {"type": "object", "properties": {
                    "token": {"anyOf": [{"$ref": "#/components/schemas/Token"}, {"type": "null"}]}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }}},
            },
        },
    }


TRAVEL = {"name": "travel_min", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 0, "maximum": 300},
          "description": "Minutes from home to the substation: when to leave is worked out from it."}
PHONE_TOKEN = _answer("The token as its phone shows it (account's last digits only)", {"type": "object"})


def _phone_paths(mutating: dict[str, Any]) -> dict[str, Any]:
    """The consumers' phone routes: public (no key); a token's link (its id and a MAC the server
    makes) is its holder's to keep: a bare token id opens nothing here."""
    public_ = {"security": []}
    return {
        "/api/v1/public/substations": {"get": {
            **public_, "summary": "Substations by current wait, and whether to suggest paying online",
            "description": ("Each substation lists its services, each with its own `waiting`, `open_counters` "
                            "and `estimate` (p50_s, p90_s); `in_hours` and `counters_open` say whether it is "
                            "within its hours and how many counters are open now. `default_service` is the "
                            "scenario's `payment_service` where the substation offers it, else null; "
                            "`estimate` is the wait for `estimate_service`."),
            "responses": {"200": _answer("Substations", {"type": "object"}), **_errors()},
        }},
        "/api/v1/public/substations/{sid}/tokens": {"post": {
            **public_, "summary": "Take a remote token from a phone (one per account and phone a day)",
            "parameters": [_path("sid"), IDEMPOTENCY, TRAVEL], "requestBody": _body("TakeToken"),
            "responses": {"201": PHONE_TOKEN, **mutating},
        }},
        "/api/v1/public/substations/{sid}/slots": {"get": {
            **public_, "summary": "Bookable slots over the booking horizon, month-end days marked",
            "description": "`now` and `today` are the server's (a phone's own clock may be wrong).",
            "parameters": [_path("sid")],
            "responses": {"200": _answer("Days and their slots", {"type": "object"}), **_errors(404)},
        }},
        "/api/v1/public/substations/{sid}/bookings": {"post": {
            **public_, "summary": "Book a slot; it becomes a token when the slot starts",
            "parameters": [_path("sid"), IDEMPOTENCY, TRAVEL], "requestBody": _body("BookSlot"),
            "responses": {"201": PHONE_TOKEN, **mutating},
        }},
        "/api/v1/public/tokens/{link}": {"get": {
            **public_, "summary": "One's own token: place, wait range and when to leave",
            "description": "A called token names its counter by id and by display name (`counter_name`, `counter_name_hi`).",
            "parameters": [_path("link", LINK_PATTERN), TRAVEL],
            "responses": {"200": PHONE_TOKEN, **_errors(400, 404)},
        }},
        "/api/v1/public/tokens/{link}/cancel": {"post": {
            **public_, "summary": "Give up one's token or booking (before it is called)",
            "parameters": [_path("link", LINK_PATTERN), IDEMPOTENCY, TRAVEL],
            "responses": {"200": PHONE_TOKEN, **mutating},
        }},
        "/api/v1/public/tokens/{link}/live": {"get": {
            **public_, "summary": "WebSocket: the token's own view whenever it changes, and heartbeats",
            "parameters": [_path("link", LINK_PATTERN), TRAVEL, *WEBSOCKET_HEADERS],
            "responses": {"101": {"description": "Switching to WebSocket"}, **_errors(400, 403, 404)},
        }},
        "/api/v1/public/tokens/{link}/sms": {
            "get": {
                **public_, "summary": "Whether the holder asked for an SMS when the turn is near (the number "
                                      "shown by its last four digits), whether SMS are sent here at all, and "
                                      "when one asked now would go (near_ahead people or near_minutes left)",
                "parameters": [_path("link", LINK_PATTERN)],
                "responses": {"200": _answer("The SMS request or null, and offered", {"type": "object"}),
                              **_errors(404)},
            },
            "post": {
                **public_, "summary": "Ask for an SMS when the turn is near and when called; the number is "
                                      "kept until the token ends, then erased (409 sms_unavailable when no "
                                      "gateway takes them here)",
                "parameters": [_path("link", LINK_PATTERN)],
                "requestBody": _body("AskSms"),
                "responses": {"201": _answer("The SMS request", {"type": "object"}), **mutating},
            },
            "delete": {
                **public_, "summary": "No more SMS for this token; the number is erased at once",
                "parameters": [_path("link", LINK_PATTERN)],
                "responses": {"200": _answer("No SMS request", {"type": "object"}), **mutating},
            },
        },
        "/api/v1/ops/substations/{sid}/slots/{day}": {"put": {
            "summary": "Ops publish one day's bookable slots",
            "parameters": [_path("sid"), _path("day", DATE_PATTERN, format="date")],
            "requestBody": _body("PublishSlots"),
            "responses": {"200": _answer("The published plan", {"type": "object"}), **mutating},
        }},
    }


def _plan_request(limits: PlanLimits | None) -> dict[str, Any]:
    """PlanRequest's schema, bounded by the scenario: its halls (those with counters) are the
    only keys of ``counters``, and days and cycles go up to the month's working days."""
    schema = _body_schemas(PlanRequest)["PlanRequest"]
    if limits is None:
        return schema
    props = schema["properties"]
    per_hall = props["counters"]["additionalProperties"]
    props["counters"] = {**props["counters"], "properties": {hall: per_hall for hall in limits.defaults.counters},
                         "additionalProperties": False}
    for name in ("days", "due_date_cycles"):
        props[name] = {**props[name], "maximum": limits.working_days}
    return schema


def _plan_paths(limits: PlanLimits | None) -> dict[str, Any]:
    """Ops' plans: the month simulation run on the server, one at a time (admin)."""
    pid = _path("pid")
    plot = {"type": "string", "enum": list(limits.plots)} if limits else {"type": "string", "pattern": ID_PATTERN}
    return {
        "/api/v1/ops/plans": {
            "get": {
                "summary": "Ops: what a plan may ask for (the scenario's figures as defaults, the "
                           "month's working days) and the latest plans, the running one named (admin)",
                "responses": {"200": _answer("Limits and plans", {"type": "object"}), **_errors(401, 403)},
            },
            "post": {
                "summary": "Ops: run the month simulation with these counters per hall, online share, "
                           "booking share and due-date cycles, in the server's worker process (admin). "
                           "One at a time: while one runs, another is refused (409 plan_running, with "
                           "its plan_id); 409 plans_unavailable when the simulator cannot run here",
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PlanRequest"}}}},
                "responses": {"202": _answer("The plan, running, its progress 0", {"type": "object"}),
                              **_errors(400, 401, 403, 408, 409, 413, 415, 422)},
            },
        },
        "/api/v1/ops/plans/{pid}": {"get": {
            "summary": "Ops: a plan's state (running, done or failed) and progress (0 to 1); done: "
                       "per hall the counters each last-week day needs, the p90 wait and the turned "
                       "away, and links to its plots (admin)",
            "parameters": [pid],
            "responses": {"200": _answer("The plan", {"type": "object"}), **_errors(401, 403, 404)},
        }},
        "/api/v1/ops/plans/{pid}/plots/{name}.png": {"get": {
            "summary": "Ops: one of a finished plan's plots (admin)",
            "parameters": [pid, {"name": "name", "in": "path", "required": True,
                                 "schema": plot}],
            "responses": {"200": {"description": "The plot", "content": {"image/png": {
                                      "schema": {"type": "string", "format": "binary"}}}},
                          **_errors(401, 403, 404),
                          "409": _answer("plan_running: the plan has no plots yet", ERROR)},
        }},
    }


@public
async def openapi_document(request: web.Request) -> web.Response:
    plans = request.app[PLANS]
    try:
        limits = plans.limits()
    except PlansUnavailable:   # no plans here: their body is given unbounded, and refused
        limits = None
    return web.json_response(build_openapi(limits))
