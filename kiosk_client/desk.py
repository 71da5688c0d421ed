"""One counter's desk: the client and the offline journal behind one set of cashier actions.

The screen and the command line both act through a ``Desk``, so they behave the same way when the
server is away: actions that need no answer from it go into the journal (with the idempotency key
of their first attempt) and tokens are issued from a leased number block; actions that do need an
answer (call next, transfer) say plainly that the server cannot be reached. While anything waits in
the journal, new actions queue behind it, so the server sees them in the order the cashier did them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .client import (
    Call,
    Json,
    KioskClient,
    KioskError,
    ServerError,
    Unreachable,
    call_next_call,
    cash_up_call,
    issue_call,
    lease_call,
    new_idempotency_key,
    offline_token_call,
    payment_call,
    refund_call,
    resubmit_call,
    seg,
    token_action_call,
    transfer_call,
)
from .journal import Entry, Journal, Lease, SyncReport, replay
from .slip import CashUpSlip, PaymentSlip, Slip
from .text import payment_line, rupees, token_line

#: Moves the journal may take while offline, and the statuses each needs (checked locally then,
#: so a cashier learns at once rather than from a failed replay an hour later).
OFFLINE_MOVES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "recall": (("called",), "called"),
    "start": (("called",), "serving"),
    "complete": (("serving",), None),
    "no-show": (("called",), None),
}
#: Payments the journal may take while offline: cash needs no answer from anyone.
OFFLINE_PAYMENT_MODES = frozenset({"cash"})
AT_COUNTER = ("called", "serving")
ACCOUNT = re.compile(r"^[0-9A-Za-z\-]{4,24}$")
MAX_PAISE = 10_000_000_00


class NeedsServer(KioskError):
    """An action that needs the server's answer (call next, transfer) while it cannot be reached."""

    @property
    def transient(self) -> bool:
        return True


@dataclass
class ActionResult:
    """What one action did: the server's answer, or the journal entry it is waiting in."""

    action: str
    token: Json | None = None
    payment: Json | None = None
    lease: Json | None = None
    entry: Entry | None = None

    @property
    def journaled(self) -> bool:
        return self.entry is not None

    def message(self, names: Mapping[str, str] | None = None) -> str:
        """One line for the cashier; ``names`` maps service ids to their names."""
        if self.payment is not None and self.action == "refund":
            text = (f"Refunded {payment_line(self.payment)}: hand the consumer "
                    f"{rupees(int(self.payment['amount_paise']))} back and take the provisional receipt")
        elif self.payment is not None:
            done = {"resubmit": "Resubmitted"}.get(self.action, "Payment")
            text = f"{done} {payment_line(self.payment)}"
        elif self.lease is not None:
            numbers = self.lease["numbers"]
            text = f"Leased {len(numbers)} numbers, {numbers[0]} to {numbers[-1]}, for offline issue"
        elif self.token is not None:
            text = token_line(self.token, names)
        elif self.action == "next":
            text = "Nobody is waiting for this counter"
        else:
            text = f"{self.action} done"
        if self.entry is not None:
            text += " [offline: kept in the journal, sent when the server is back]"
        return text

    def as_json(self) -> Json | None:
        """The server's object (token or payment), or the local stand-in while it is journalled;
        None when there is none (call next with nobody waiting)."""
        found = self.payment or self.token or self.lease
        if found is None:
            return None
        answer: Json = dict(found)
        if self.entry is not None:
            answer["journal"] = {"seq": self.entry.seq, "status": self.entry.status,
                                 "idempotency_key": self.entry.idem}
        return answer


@dataclass
class View:
    """Everything the screen shows about the counter, at one moment."""

    counter: str
    substation: str
    substation_name: str
    online: bool | None
    billing: Json | None
    current: Json | None
    tokens: list[Json]
    waiting: int
    pending: int
    failed: int
    error: str | None = None

    def server_text(self) -> str:
        if self.online is None:
            return "connecting"
        if self.online:
            return "ONLINE" + (f", {self.pending} pending" if self.pending else "")
        return f"OFFLINE, {self.pending} pending"

    def billing_text(self) -> str:
        if not self.online or not self.billing:
            return "billing unknown"
        state = str(self.billing.get("state", "unknown"))
        text = {"up": "billing up", "slow": "billing SLOW", "down": "billing DOWN"}.get(state, f"billing {state}")
        return text + (" (simulated)" if self.billing.get("simulated") else "")

    def status_line(self) -> str:
        parts = [f"{self.counter} {self.substation_name}".strip(), self.server_text(), self.billing_text()]
        if self.failed:
            parts.append(f"{self.failed} FAILED in journal")
        return " | ".join(parts)

    def as_json(self) -> Json:
        return {"counter": self.counter, "substation": self.substation, "online": self.online,
                "billing": self.billing, "current": self.current, "waiting": self.waiting,
                "pending": self.pending, "failed": self.failed, "error": self.error,
                "tokens": self.tokens}


@dataclass
class Desk:
    """A counter's actions over ``client``, falling back to ``journal`` while the server is away.

    ``counter`` comes from the key (``GET /api/v1/me``) unless given. ``lease_size`` numbers per
    service are leased while online and topped up when fewer than ``lease_low`` are left.
    """

    client: KioskClient
    journal: Journal
    counter: str | None = None
    lease_size: int = 10
    lease_low: int = 3
    offline_retries: int = 0
    online: bool | None = None
    billing: Json | None = None
    substation: str = ""
    substation_name: str = ""
    services: list[Json] = field(default_factory=list)          # the substation's, id/name/letter
    counter_services: list[str] = field(default_factory=list)   # what this counter serves
    counters: list[str] = field(default_factory=list)           # the substation's counters
    counter_names: dict[str, str] = field(default_factory=dict)  # their display names
    tokens: list[Json] = field(default_factory=list)
    waiting: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- who we are ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Learn the counter (from the key) and its substation; from the journal when offline."""
        key_tag = "me:" + hashlib.sha256(self.client.key.encode()).hexdigest()[:16]
        me = await self._online_or_cached(Call("GET", "/api/v1/me"), key_tag)
        if self.counter is None:
            if me is None:
                raise KioskError("The server cannot be reached and this kiosk has not met this key "
                                 "before: pass --counter to work offline.")
            if not me.get("counter"):
                raise KioskError(f"This is a {me.get('role')} key, bound to no counter: pass --counter.")
            self.counter = str(me["counter"])
        found = await self._online_or_cached(Call("GET", "/api/v1/substations"), "substations")
        substations = (found or {}).get("substations", [])
        for sub in substations:
            for counter in sub.get("counters", []):
                if counter["id"] == self.counter:
                    self.substation, self.substation_name = sub["id"], sub.get("name", "")
                    self.services = list(sub.get("services", []))
                    self.counters = [c["id"] for c in sub["counters"]]
                    self.counter_names = {c["id"]: c.get("name") or c["id"] for c in sub["counters"]}
                    self.counter_services = list(counter.get("services", []))
        if not self.substation:
            if me is not None and me.get("substation") and me.get("counter") == self.counter:
                self.substation = str(me["substation"])
            else:
                raise KioskError(f"Counter {self.counter} is not in the server's scenario.")
        if not self.counter_services:  # offline, first start: what we hold leases for
            self.counter_services = sorted({lease.service for lease in self.journal.leases(self.counter)})

    async def _online_or_cached(self, call: Call, name: str) -> Any:
        """The server's answer (kept in the journal), or what the journal kept while offline."""
        try:
            value = await self._send(call)
        except KioskError as exc:
            if not exc.transient:
                raise
            return self.journal.get_state(name)
        self.journal.set_state(name, value)
        return value

    @property
    def cid(self) -> str:
        if self.counter is None:
            raise KioskError("The desk is not connected: call connect() first.")
        return self.counter

    @property
    def service_names(self) -> dict[str, str]:
        return {s["id"]: s.get("name", s["id"]) for s in self.services}

    def service_name(self, service_id: str) -> str:
        return self.service_names.get(service_id, service_id)

    def counter_name(self, counter_id: str | None = None) -> str:
        """What slips and screens call a counter: its display name ("Counter 1", "Window A")."""
        cid = counter_id or self.cid
        return self.counter_names.get(cid, cid)

    def default_service(self) -> str:
        if self.counter_services:
            return self.counter_services[0]
        if self.services:
            return self.services[0]["id"]
        raise KioskError("No service known for this counter yet: connect while online once.")

    # --- sending, with the online/offline bookkeeping -------------------------------------------

    async def _send(self, call: Call, idem: str | None = None) -> Json:
        retries = self.offline_retries if self.online is False else None
        try:
            answer = await self.client.send(call, idem=idem, retries=retries)
        except Unreachable:
            self.online = False
            raise
        self.online = True
        self._learn_clock()
        return answer

    def _learn_clock(self) -> None:
        """Keep the server's clock skew; the Date header's second-sized jitter is not news."""
        skew = self.client.clock_skew_s
        if skew is None:
            return
        known = self.journal.get_state("clock_skew_s")
        if known is None or abs(float(known) - skew) >= 1.0:
            self.journal.set_state("clock_skew_s", round(skew, 3))

    def _learn_token(self, token: Json | None) -> Json | None:
        """Remember the server's day and UTC offset from a token: offline issue needs both."""
        if token and token.get("issued_at"):
            try:
                moment = datetime.fromisoformat(token["issued_at"])
            except ValueError:
                return token
            offset = moment.utcoffset()
            if offset is not None:
                self.journal.set_state("utc_offset_s", offset.total_seconds())
            if token.get("day"):
                self.journal.set_state("server_day", token["day"])
        return token

    def server_now(self) -> datetime:
        """Now on the server's clock and in its time zone, as best this kiosk knows them.

        The skew comes from the Date header, which is truncated to the second and stamped before
        the answer arrives, so this never runs ahead of the server: an offline token must not
        look issued in the server's future.
        """
        moment = time.time() + float(self.journal.get_state("clock_skew_s", 0.0) or 0.0)
        offset = self.journal.get_state("utc_offset_s")
        if offset is None:
            return datetime.fromtimestamp(moment).astimezone()
        return datetime.fromtimestamp(moment, timezone(timedelta(seconds=offset)))

    def server_day(self) -> str:
        if self.journal.get_state("utc_offset_s") is None and self.journal.get_state("server_day"):
            return str(self.journal.get_state("server_day"))
        return self.server_now().date().isoformat()

    # --- the current token --------------------------------------------------------------------

    def current(self) -> Json | None:
        """The token at this counter (called or being served), as last known."""
        return self.journal.get_state(f"current:{self.cid}")

    def _set_current(self, token: Json | None) -> None:
        if token is not None and (token.get("status") not in AT_COUNTER or token.get("counter") != self.cid):
            token = None
        self.journal.set_state(f"current:{self.cid}", token)

    def last_finished(self) -> Json | None:
        """The token this counter finished last, as then known: its payment may still be taken
        for a few minutes (the server's window), so ``p`` after ``f`` still works."""
        return self.journal.get_state(f"finished:{self.cid}")

    def _note_finished(self, token: Json) -> None:
        if token.get("status") == "done":
            self.journal.set_state(f"finished:{self.cid}", token)

    def _target(self, token_id: str | None) -> Json:
        current = self.current()
        if token_id is None:
            if current is None:
                raise KioskError(f"No token at counter {self.cid}: call the next one first.")
            return current
        for known in (current, self.last_finished()):
            if known is not None and known.get("id") == token_id:
                return known
        return {"id": token_id, "number": token_id}

    def pending_count(self) -> int:
        return self.journal.pending_count(self.cid)

    def failed_count(self) -> int:
        return self.journal.failed_count(self.cid)

    # --- looking around -----------------------------------------------------------------------

    async def refresh(self, *, sync: bool = True) -> View:
        """Health, billing, the queue and this counter's token; replays the journal when back."""
        error = None
        try:
            health = await self._send(Call("GET", "/healthz"))
            self.billing = health.get("billing")
            if sync and self.pending_count():
                async with self.lock:
                    await self._sync_locked()
            await self._load_queue()
        except KioskError as exc:
            error = exc.message
        return self.view(error)

    async def locate(self) -> Json | None:
        """The counter's current token, fresh from the server when it answers, else as last known."""
        try:
            await self._load_queue()
        except KioskError as exc:
            if not exc.transient:
                raise
        return self.current()

    async def _load_queue(self) -> None:
        queue = await self._send(Call("GET", f"/api/v1/substations/{seg(self.substation)}/queue"))
        self.tokens = queue.get("tokens", [])
        self.waiting = int(queue.get("waiting", 0))
        day = (queue.get("hall") or {}).get("day")
        if day:
            self.journal.set_state("server_day", day)
        for token in self.tokens[:1]:
            self._learn_token(token)
        if not self.pending_count():  # else the journal holds newer news than the server
            mine = [t for t in self.tokens if t.get("counter") == self.cid and t.get("status") in AT_COUNTER]
            self._set_current(mine[0] if mine else None)

    def view(self, error: str | None = None) -> View:
        return View(counter=self.cid, substation=self.substation, substation_name=self.substation_name,
                    online=self.online, billing=self.billing, current=self.current(),
                    tokens=list(self.tokens), waiting=self.waiting, pending=self.pending_count(),
                    failed=self.failed_count(), error=error)

    async def bill(self, account: str) -> Json:
        """The consumer's bill through the server's gateway (stale when billing is down)."""
        return await self._send(Call("GET", f"/api/v1/bills/{seg(account)}"))

    # --- the journal ----------------------------------------------------------------------------

    async def sync(self) -> SyncReport:
        """Replay the journal in order; entries the server refuses for good are kept as failed."""
        async with self.lock:
            return await self._sync_locked()

    async def _sync_locked(self) -> SyncReport:
        report = await replay(self.journal, self.client, self.cid,
                              retries=self.offline_retries if self.online is False else 1)
        if isinstance(report.stopped, Unreachable):
            self.online = False
        elif report.done or report.failed:
            self.online = True
            self._learn_clock()
        return report

    async def _journalable(self, kind: str, label: str, call: Call,
                           check: Callable[[], None] = lambda: None) -> tuple[Json | None, Entry | None]:
        """Send ``call`` now if nothing waits ahead of it and the server answers; else journal it.

        ``check`` runs before journalling and raises when the move cannot succeed later.
        """
        idem = new_idempotency_key()
        async with self.lock:
            blocked = False
            if self.pending_count():
                report = await self._sync_locked()
                blocked = report.pending > 0
            if not blocked:
                try:
                    return await self._send(call, idem), None
                except KioskError as exc:
                    if not exc.transient:
                        raise
            check()
            return None, self.journal.append(self.cid, kind, label, call, idem)

    # --- leases ---------------------------------------------------------------------------------

    async def ensure_leases(self, services: list[str] | None = None) -> list[Lease]:
        """Top up this counter's leased numbers while online, so it can issue when the server is away."""
        if self.lease_size <= 0:
            return []
        day = self.server_day()
        got = []
        for service in services or self.counter_services:
            if self.journal.numbers_left(self.cid, service, day) >= self.lease_low:
                continue
            got.append(await self.lease(service))
        return got

    async def lease(self, service: str | None = None, size: int | None = None) -> Lease:
        service = service or self.default_service()
        call = lease_call(self.cid, service, size or self.lease_size or 10)
        lease = (await self._send(call, new_idempotency_key()))["lease"]
        self.journal.set_state("server_day", lease["day"])
        return self.journal.add_lease(lease)

    # --- the actions ------------------------------------------------------------------------------

    async def issue(self, service: str | None = None, priority: str = "normal") -> ActionResult:
        """A token for a consumer; from a leased block when the server cannot be reached."""
        service = service or self.default_service()
        try:
            answer = await self._send(issue_call(self.substation, service, priority), new_idempotency_key())
        except KioskError as exc:
            if not exc.transient:
                raise
            return self._issue_offline(service, priority, exc)
        token = self._learn_token(answer["token"])
        return ActionResult("issue", token=token)

    def _issue_offline(self, service: str, priority: str, why: KioskError) -> ActionResult:
        taken = self.journal.take_number(self.cid, service, self.server_day())
        if taken is None:
            raise NeedsServer(
                f"{why.message} No leased {self.service_name(service)} numbers are left for today, so no "
                "token can be issued offline: write the consumer a number by hand for now. While the "
                f"server is up, lease numbers with `kiosk lease --service {service}` (kept open, the app "
                "and every kiosk command top them up by themselves).")
        lease, number = taken
        issued_at = self.server_now().isoformat(timespec="seconds")
        call = offline_token_call(self.cid, lease.id, number, issued_at, priority)
        entry = self.journal.append(self.cid, "offline_token", f"issue {number}", call, new_idempotency_key())
        token = {"id": None, "number": number, "substation": self.substation, "service": service,
                 "priority": priority, "status": "waiting", "counter": None, "issued_at": issued_at,
                 "day": lease.day, "estimate": None, "offline": True}
        return ActionResult("issue", token=token, entry=entry)

    async def call_next(self) -> ActionResult:
        """Call the next consumer to this counter: needs the server, which decides who is next."""
        async with self.lock:
            if self.pending_count():
                report = await self._sync_locked()
                if report.pending:
                    raise NeedsServer(f"Calling the next token needs the server, which cannot be reached "
                                      f"({report.pending} actions wait in the journal): call the next "
                                      "consumer by voice.")
            try:
                answer = await self._send(call_next_call(self.cid), new_idempotency_key())
            except Unreachable as exc:
                raise NeedsServer(f"{exc.message} Calling the next token needs the server: call the next "
                                  "consumer by voice.") from exc
        token = self._learn_token(answer["token"])
        if token is not None:
            self._set_current(token)
        return ActionResult("next", token=token)

    async def act(self, action: str, token_id: str | None = None) -> ActionResult:
        """recall, start, complete or no-show (journalled while offline); cancel or requeue online."""
        target = self._target(token_id)
        call = token_action_call(target["id"], action)
        if action not in OFFLINE_MOVES:
            answer = await self._send(call, new_idempotency_key())
            return self._after_move(answer["token"], action)
        label = f"{action} {target.get('number', target['id'])}"
        answer, entry = await self._journalable(action, label, call, lambda: self._check_move(action, target))
        if entry is None:
            assert answer is not None
            return self._after_move(answer["token"], action)
        return ActionResult(action, token=self._move_locally(action, target), entry=entry)

    def _after_move(self, token: Json, action: str) -> ActionResult:
        if action == "complete":
            self._note_finished(token)
        current = self.current()
        if current is not None and current.get("id") == token.get("id"):
            self._set_current(token)  # None once it has left the counter
        elif token.get("counter") == self.cid and token.get("status") in AT_COUNTER:
            self._set_current(token)
        return ActionResult(action, token=token)

    @staticmethod
    def _check_move(action: str, target: Json) -> None:
        """Refuse offline what the server would refuse on replay, so the cashier learns it now."""
        needs = OFFLINE_MOVES[action][0]
        status = target.get("status")
        if status is not None and status not in needs:
            raise KioskError(f"Token {target.get('number')} is {status}; {action!r} needs it "
                             f"{' or '.join(needs)} (checked offline).")

    def _move_locally(self, action: str, target: Json) -> Json:
        """The token as it will be once the journalled move lands."""
        token = dict(target)
        token["status"] = OFFLINE_MOVES[action][1] or {"complete": "done", "no-show": "no_show"}[action]
        if action == "recall":
            token["recalls"] = int(token.get("recalls", 0)) + 1
        if action == "complete":
            token["finished_at"] = self.server_now().isoformat(timespec="seconds")
            self._note_finished(token)
        if target.get("id") == (self.current() or {}).get("id"):
            self._set_current(token)
        return token

    async def start(self, token_id: str | None = None) -> ActionResult:
        return await self.act("start", token_id)

    async def complete(self, token_id: str | None = None) -> ActionResult:
        return await self.act("complete", token_id)

    async def recall(self, token_id: str | None = None) -> ActionResult:
        return await self.act("recall", token_id)

    async def no_show(self, token_id: str | None = None) -> ActionResult:
        return await self.act("no-show", token_id)

    async def transfer(self, *, service: str | None = None, counter: str | None = None,
                       token_id: str | None = None) -> ActionResult:
        """Send the consumer to another service or counter: needs the server's answer."""
        target = self._target(token_id)
        try:
            answer = await self._send(transfer_call(target["id"], service, counter), new_idempotency_key())
        except Unreachable as exc:
            raise NeedsServer(f"{exc.message} A transfer needs the server.") from exc
        token = answer["token"]
        if (self.current() or {}).get("id") == token.get("id"):
            self._set_current(token)
        return ActionResult("transfer", token=token)

    async def pay(self, account: str, amount_paise: int, mode: str = "cash",
                  token_id: str | None = None, part: bool = False) -> ActionResult:
        """Record a payment for the token at the counter (or one just finished there, by its id);
        cash goes to the journal while offline. ``part`` marks one of several for the token."""
        account = account.strip()
        if not ACCOUNT.match(account):
            raise KioskError(f"Account {account!r}: 4-24 letters, digits or dashes.")
        if not 1 <= amount_paise <= MAX_PAISE:
            raise KioskError(f"Amount {rupees(amount_paise) if amount_paise > 0 else amount_paise}: "
                             f"from Rs 0.01 to {rupees(MAX_PAISE)}.")
        target = self._target(token_id)
        known = target if "status" in target else None   # the token as last seen, for the slip
        call = payment_call(target["id"], account, amount_paise, mode, part)
        if mode not in OFFLINE_PAYMENT_MODES:
            try:
                answer = await self._send(call, new_idempotency_key())
            except Unreachable as exc:
                raise NeedsServer(f"{exc.message} Only cash is taken while offline.") from exc
            return ActionResult("pay", payment=answer["payment"], token=known)
        label = f"pay {rupees(amount_paise)} {mode} for {target.get('number', target['id'])}"
        answer, entry = await self._journalable("payment", label, call)
        if entry is None:
            assert answer is not None
            return ActionResult("pay", payment=answer["payment"], token=known)
        payment = {"id": None, "token_id": target["id"], "substation": self.substation, "counter": self.cid,
                   "account": account, "amount_paise": amount_paise, "mode": mode, "part": part,
                   "status": "journaled", "receipt": f"OFFLINE-{self.cid}-{entry.seq:06d}",
                   "created_at": self.server_now().isoformat(timespec="seconds")}
        return ActionResult("pay", payment=payment, entry=entry, token=known)

    def slip_for(self, result: ActionResult) -> Slip | PaymentSlip | None:
        """What the printer gives the consumer: a token slip for an issue, a provisional receipt
        for a payment (its receipt number, amount, the account's last digits, counter, time)."""
        if result.payment is not None and result.action == "pay":
            token = result.token or {}
            number = token.get("number") if token.get("id") == result.payment.get("token_id") else None
            counter = self.counter_name(result.payment.get("counter"))
            return PaymentSlip.from_payment(result.payment, counter_name=counter, token_number=number,
                                            substation_name=self.substation_name, taken_at=self.server_now())
        if result.action == "issue" and result.token is not None:
            return Slip.from_token(result.token, service_name=self.service_name(result.token["service"]),
                                   substation_name=self.substation_name)
        return None


    # --- failed payments and the cash-up: each needs the server --------------------------------

    async def _needs_server(self, call: Call, what: str, idem: str | None = None) -> Json:
        try:
            return await self._send(call, idem)
        except Unreachable as exc:
            raise NeedsServer(f"{exc.message} {what} needs the server.") from exc

    async def failed_payments(self) -> list[Json]:
        """This counter's worklist: payments billing refused for good, oldest first, each with
        its reason in words (``reason_text``). An admin key sees every counter's; only this one's
        are kept."""
        answer = await self._needs_server(Call("GET", "/api/v1/payments?status=failed"),
                                          "The failed-payments worklist")
        return [p for p in answer.get("payments", []) if p.get("counter") == self.cid]

    async def find_failed(self, ref: str) -> str:
        """The id of the failed payment a cashier names by its id or by its receipt number (what
        the consumer's slip shows). An id not on the worklist goes to the server as it is, which
        says why (not failed, another counter's, unknown); a receipt there is no id for is refused here."""
        ref = ref.strip()
        for payment in await self.failed_payments():
            if ref == payment.get("id") or ref.upper() == str(payment.get("receipt", "")).upper():
                return str(payment["id"])
        if ref.upper().startswith(("PROV-", "OFFLINE-")):
            raise KioskError(f"Receipt {ref} is not on counter {self.cid}'s worklist of failed payments "
                             "(billing may have posted it, or it was refunded): `kiosk failed` lists them.")
        return ref

    async def resubmit(self, ref: str, account: str | None = None) -> ActionResult:
        """Send a failed payment (by id or receipt) to billing again, the account corrected when given."""
        if account is not None:
            account = account.strip()
            if not ACCOUNT.match(account):
                raise KioskError(f"Account {account!r}: 4-24 letters, digits or dashes.")
        pid = await self.find_failed(ref)
        answer = await self._needs_server(resubmit_call(pid, account), "Resubmitting a payment",
                                          new_idempotency_key())
        return ActionResult("resubmit", payment=answer["payment"])

    async def refund(self, ref: str) -> ActionResult:
        """Record that a failed payment's cash went back to the consumer."""
        pid = await self.find_failed(ref)
        answer = await self._needs_server(refund_call(pid), "Recording a refund", new_idempotency_key())
        return ActionResult("refund", payment=answer["payment"])

    async def cash_up(self, day: str | None = None) -> Json:
        """This counter's cash-up for ``day`` (YYYY-MM-DD; the server's today when None)."""
        answer = await self._needs_server(cash_up_call(self.cid, day), "The cash-up")
        return answer["cash_up"]

    def cash_up_slip(self, cash: Json) -> CashUpSlip:
        """The cash-up as the slip printer prints it, with the counter's and hall's names."""
        return CashUpSlip.from_cash_up(cash, counter_name=self.counter_name(cash.get("counter")),
                                       substation_name=self.substation_name, printed_at=self.server_now())


def describe_error(exc: BaseException) -> str:
    """One line for a cashier: the server's message, with alternatives when admission refused."""
    if isinstance(exc, ServerError):
        text = exc.message or exc.code
        if exc.code == "cannot_serve_today":
            others = [f"{a.get('substation')} {a.get('name', '')} ({a.get('distance_km', '?')} km)".strip()
                      for a in exc.details.get("alternatives", [])]
            if others:
                text += " Try: " + ", ".join(others) + "."
            online = (exc.details.get("online") or {}).get("text")
            if online:
                text += " " + online
        return text
    if isinstance(exc, KioskError):
        return exc.message
    return str(exc) or type(exc).__name__
