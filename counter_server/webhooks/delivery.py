"""Delivery of notices to webhook endpoints, signed as Standard Webhooks asks.

Each endpoint has its own task reading the notice log from the endpoint's cursor, one delivery
in flight at a time, so a slow or dead receiver holds back nobody but itself, and the counters
never wait for any of them (a change only writes its notice). A delivery that fails is tried
again after a backoff that doubles with full jitter; the cursor moves only past what the
receiver answered 2xx to, so after a crash the next delivery is the first not confirmed: at
least once, and the ``webhook-id`` header lets the receiver drop a repeat. An endpoint failing
for ``disable_after_minutes`` is disabled and shown to ops as such.

With several replicas, one of them holds each endpoint at a time (a lease kept in the
endpoint's record, written over the version it read), so notices go out once per endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import aiohttp

from ..config import Scenario, WebhooksConfig
from ..notices import HALL_ALERT, TOKEN_CALLED, TOKEN_NEAR, Notice, SmsRequest, Webhook
from ..shapes import counter_names
from ..store import Store
from .endpoints import SECRET_PREFIX, UrlRefused, reachable_url

log = logging.getLogger(__name__)

LEASE_S = 15.0     # how long a replica holds an endpoint without renewing
BATCH = 100        # notices read at a time
RECENT = 10        # deliveries kept on the endpoint for ops to see


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: HMAC-SHA256 over ``id.timestamp.body``, base64."""
    key = base64.b64decode(secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret)
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def message_body(notice: Notice, scenario: Scenario, sms: SmsRequest | None = None) -> bytes:
    """The JSON a receiver gets: ``type``, ``timestamp``, ``data``, the data with the hall's
    and counter's names and, for a token, a ready text in English and Hindi; with ``sms``
    (the consumer asked, and the token has not ended), ``data.sms``: the number and one
    message in both languages, for an SMS or WhatsApp gateway to send as it is."""
    data: dict[str, Any] = dict(notice.data)
    hall = scenario.substations.get(data.get("substation") or "")
    if hall is not None:
        data["substation_name"], data["substation_name_hi"] = hall.name, hall.name_hi or hall.name
    if "token" in data and data.get("counter"):
        names = counter_names(scenario, data["counter"])
        data["counter_name"], data["counter_name_hi"] = names["name"], names["name_hi"]
    data.update(_texts(notice.type, data))
    if sms is not None and "text" in data:
        data["sms"] = {"to": sms.mobile, "text": f"{data['text']}\n{data['text_hi']}"}
    stamp = datetime.fromtimestamp(notice.at, timezone.utc).isoformat(timespec="milliseconds")
    body = {"type": notice.type, "timestamp": stamp.replace("+00:00", "Z"), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _texts(kind: str, data: Mapping[str, Any]) -> dict[str, str]:
    """What an SMS or a screen would say, in both languages."""
    token = data.get("token") or {}
    number = token.get("number")
    hall, hall_hi = data.get("substation_name", ""), data.get("substation_name_hi", "")
    counter, counter_hi = data.get("counter_name"), data.get("counter_name_hi")
    if kind == "token.called" and number:
        return {"text": f"Token {number}: please come to {counter} at {hall} now.",
                "text_hi": f"टोकन {number}: कृपया अभी {hall_hi} में {counter_hi} पर आएँ।"}
    if kind == "token.near" and number:
        minutes = data.get("wait_p50_s")
        about = f", about {max(1, round(minutes / 60))} min" if minutes is not None else ""
        about_hi = f", लगभग {max(1, round(minutes / 60))} मिनट" if minutes is not None else ""
        ahead = data.get("ahead", 0)
        return {"text": f"Token {number} at {hall}: {ahead} ahead of you{about}. Please come to the hall now.",
                "text_hi": f"टोकन {number}, {hall_hi}: आपसे पहले {ahead} लोग{about_hi}। कृपया अभी हॉल में आएँ।"}
    if kind == "token.no_show" and number:
        return {"text": f"Token {number} was called at {counter}, {hall}, and nobody came; it is closed.",
                "text_hi": f"टोकन {number} को {hall_hi} में {counter_hi} पर बुलाया गया, कोई नहीं आया; "
                           "टोकन बंद हो गया।"}
    return {}


def alert_notice(alert: Mapping[str, Any], day: str, episode: int, at: float) -> Notice:
    """An ops alert as a notice. Its id comes from the alert, the day and how often it began
    that day, so two replicas seeing one alert give the receiver one id to drop the repeat by."""
    digest = hashlib.sha256(f"{day}\n{alert['key']}\n{episode}".encode()).hexdigest()[:32]
    return Notice("evt_alert_" + digest, HALL_ALERT, at, {**alert, "day": day})


class WebhookDeliverer:
    """One task per endpoint, and a round that finds endpoints added or removed (on any
    replica) every ``poll_s``."""

    def __init__(self, store: Store, scenario: Scenario, config: WebhooksConfig, *, poll_s: float = 0.25,
                 shared: bool = False, clock: Callable[[], float] = time.time) -> None:
        """``shared``: other processes deliver from the same store (Redis replicas), so each
        holds its endpoints by a lease of its own; a store only this process opens (SQLite)
        has one deliverer, which takes its claims back at once after a restart."""
        self.store = store
        self.scenario = scenario
        self.config = config
        self.poll_s = poll_s
        self.clock = clock
        self.worker = "deliverer-" + uuid.uuid4().hex[:8] if shared else "this-server"
        self._hooks: dict[str, Webhook] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._round: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._alerts_seen: dict[str, int] = {}        # alert key -> times it began today
        self._alerts_day = ""
        self._alerts_now: set[str] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        self._round = asyncio.create_task(self._find_endpoints(), name="webhook-endpoints")

    async def stop(self) -> None:
        tasks = [t for t in (self._round, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    async def alerts_seen(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Write a ``hall.alert`` notice for each alert that began since the last look."""
        now = self.clock()
        day = self.scenario.day_of(now)
        if day != self._alerts_day:
            self._alerts_day, self._alerts_seen = day, {}
        current = {a["key"]: a for a in alerts}
        for key in current.keys() - self._alerts_now:
            self._alerts_seen[key] = self._alerts_seen.get(key, 0) + 1
            await self.store.add_notice(alert_notice(current[key], day, self._alerts_seen[key], now))
        self._alerts_now = set(current)

    # -- endpoints ---------------------------------------------------------------------

    async def _find_endpoints(self) -> None:
        failing = False
        while True:
            try:
                hooks = {h.id: h for h in await self.store.webhooks()}
            except Exception as exc:  # noqa: BLE001 - the store may be away a moment; look again
                if not failing:       # once while it lasts, not four times a second
                    log.warning("reading webhook endpoints failed (trying again): %s", exc)
                failing = True
            else:
                failing = False
                for hook_id, hook in hooks.items():
                    mine = self._hooks.get(hook_id)
                    if mine is None or hook.version > mine.version:
                        self._hooks[hook_id] = hook
                    if hook_id not in self._tasks:
                        self._tasks[hook_id] = asyncio.create_task(self._serve(hook_id), name=f"webhook-{hook_id}")
                for gone in self._tasks.keys() - hooks.keys():
                    self._tasks.pop(gone).cancel()
                    self._hooks.pop(gone, None)
            await asyncio.sleep(self.poll_s)

    async def _save(self, hook: Webhook) -> Webhook | None:
        """``hook`` written over the version before it; None when someone else wrote first."""
        if await self.store.save_webhook(hook):
            current = self._hooks.get(hook.id)
            if current is None or hook.version >= current.version:
                self._hooks[hook.id] = hook
            return hook
        return None

    async def _serve(self, hook_id: str) -> None:
        failing = False
        while hook_id in self._hooks:
            try:
                delivered = await self._step(self._hooks[hook_id])
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store was away: try again in a moment
                if not failing:
                    log.warning("webhook %s: delivery round failed (trying again): %s", hook_id, exc)
                failing, delivered = True, False
            if not delivered:
                await asyncio.sleep(self.poll_s)

    async def _step(self, hook: Webhook) -> bool:
        """Deliver the next notice the endpoint wants; False when there was nothing to do."""
        now = self.clock()
        if hook.disabled_at is not None:
            return False
        if hook.claimed_by not in (None, self.worker) and hook.claim_until > now:
            return False            # another replica delivers to it
        if hook.claimed_by != self.worker or hook.claim_until - now < LEASE_S / 2:
            claimed = await self._save(replace(hook, claimed_by=self.worker, claim_until=now + LEASE_S,
                                               version=hook.version + 1))
            if claimed is None:
                return False
            hook = claimed
        notices = await self.store.notices_after(hook.cursor, BATCH)
        wanted = next((n for n in notices if n.type in hook.events), None)
        if wanted is None:
            if notices:     # none of these is for it: move past them
                return await self._save(replace(hook, cursor=notices[-1].cursor, version=hook.version + 1)) is not None
            return False
        ok, entry = await self._post(hook, wanted)
        if ok:
            done = replace(hook, cursor=wanted.cursor, delivered=hook.delivered + 1, failing_since=None,
                           failed_attempts=0, recent=(entry, *hook.recent)[:RECENT], version=hook.version + 1)
            await self._save(done)
            return True
        await self._failed(hook, entry)
        return True

    async def _failed(self, hook: Webhook, entry: Mapping[str, Any]) -> None:
        now = self.clock()
        since = hook.failing_since if hook.failing_since is not None else now
        attempts = hook.failed_attempts + 1
        disabled = now - since >= self.config.disable_after_minutes * 60
        failed = replace(hook, failing_since=since, failed_attempts=attempts,
                         recent=(entry, *hook.recent)[:RECENT], version=hook.version + 1,
                         disabled_at=now if disabled else None,
                         disabled_reason=(f"{attempts} tries failed, the last: {entry['error']}"
                                          if disabled else None))   # since when: failing_since
        if disabled:
            log.warning("webhook %s (%s) disabled after failing for %.0f min", hook.id, hook.url,
                        (now - since) / 60)
        await self._save(failed)
        if not disabled:    # full jitter: receivers coming back are not hit by every retry at once
            cap = min(self.config.retry_max_s, self.config.retry_first_s * 2 ** min(attempts - 1, 30))
            await asyncio.sleep(random.uniform(0.5, 1.0) * cap)

    async def _post(self, hook: Webhook, notice: Notice) -> tuple[bool, dict[str, Any]]:
        assert self._session is not None
        sms = None
        if notice.type in (TOKEN_CALLED, TOKEN_NEAR):
            sms = await self.store.sms_request((notice.data.get("token") or {}).get("id") or "")
        body = message_body(notice, self.scenario, sms)
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "user-agent": "counter-server-webhooks",
                   "webhook-id": notice.id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(hook.secret, notice.id, timestamp, body)}
        started = time.monotonic()
        entry: dict[str, Any] = {"id": notice.id, "type": notice.type, "at": self.clock(), "status": None,
                                 "ok": False, "error": None, "ms": None}
        try:
            await reachable_url(hook.url)
            async with self._session.post(hook.url, data=body, headers=headers, allow_redirects=False) as resp:
                entry["status"] = resp.status   # the body is not read: only the status counts
            entry["ok"] = 200 <= resp.status < 300
            if not entry["ok"]:
                entry["error"] = f"answered {resp.status}"
        except UrlRefused as exc:
            entry["error"] = exc.message
        except TimeoutError:
            entry["error"] = f"no answer within {self.config.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        entry["ms"] = round((time.monotonic() - started) * 1000)
        return entry["ok"], entry
