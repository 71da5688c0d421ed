"""Consumers' SMS requests: "your turn is near" when it is, and the number erased when the token ends.

Level-triggered, so nothing hangs on one moment: after each commit to a hall where someone
asked (and every ``sweep_s`` for the rest), each request is compared with the queue as
committed. A waiting token with at most ``sms_near_ahead`` people ahead, or a p50 wait of at
most ``sms_near_minutes``, gets its ``token.near`` notice, marked together with the request so
it goes once, even across a crash between the change and this look. A token that has ended
(served, cancelled, no-show, closed at the end of the day) has its request, and the mobile
number in it, erased. The ``token.called`` message needs nothing here: the call's own notice
carries the token, and the delivery adds the number while the request exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..config import PhonesConfig
from ..notices import SmsRequest, near_notice
from ..queueing import Status, SubstationQueue
from ..store import Committed, Store
from ..store.codec import to_row

log = logging.getLogger(__name__)


class SmsWatch:
    def __init__(self, store: Store, phones: PhonesConfig, *, sweep_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.phones = phones
        self.sweep_s = sweep_s
        self.clock = clock
        self._halls: set[tuple[str, str]] = set()     # halls changed since the last look
        self._asking: set[tuple[str, str]] = set()    # halls where someone has a request
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_commit(self, change: Committed) -> None:
        """A store listener: look at this hall's requests soon, if anyone there asked (a hall
        nobody asked in costs nothing, however busy)."""
        if (change.substation, change.day) in self._asking:
            self.look_soon(change.substation, change.day)

    def look_soon(self, substation: str, day: str) -> None:
        """Look at this hall's requests at once (a commit there, or someone just asked)."""
        self._asking.add((substation, day))
        self._halls.add((substation, day))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sms-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        sweep_at, failing = 0.0, False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_s)
            except TimeoutError:
                pass
            self._wake.clear()
            halls, self._halls = self._halls, set()
            everything = time.monotonic() >= sweep_at
            if everything:
                sweep_at = time.monotonic() + self.sweep_s
            try:
                await self.look(None if everything else halls)
                failing = False
            except Exception as exc:  # noqa: BLE001 - the next look (a sweep looks at every hall) tries again
                if not failing:
                    log.warning("looking at SMS requests failed (trying again): %s", exc)
                failing = True

    async def look(self, halls: set[tuple[str, str]] | None = None) -> None:
        """Send what is due and erase what has ended, for ``halls`` (None: every hall)."""
        by_hall: dict[tuple[str, str], list[SmsRequest]] = {}
        asking = set()
        for request in await self.store.sms_requests():
            key = (request.substation, request.day)
            asking.add(key)
            if halls is None or key in halls:
                by_hall.setdefault(key, []).append(request)
        if halls is None:     # every hall looked at: the halls asking are these (another replica's too)
            self._asking = asking
        for (substation, day), requests in by_hall.items():
            due, ended = await self.store.read_queue(substation, day, lambda q: self._verdicts(q, requests))
            if ended:
                await self.store.forget_sms_requests(ended)
            for request, notice in due:
                await self.store.mark_sms_near(request.token_id, notice.at, notice)

    def _verdicts(self, q: SubstationQueue, requests: list[SmsRequest]) -> tuple[list, list[str]]:
        now = self.clock()
        due, ended = [], []
        for request in requests:
            token = q.tokens.get(request.token_id)
            if token is None or not token.active:
                ended.append(request.token_id)
                continue
            if request.near_sent_at is not None or token.status is not Status.WAITING:
                continue
            estimate = q.estimate_for(token)
            if estimate is None:
                continue
            near = estimate.ahead <= self.phones.sms_near_ahead or (
                estimate.p50_s is not None and estimate.p50_s <= self.phones.sms_near_minutes * 60)
            if near:
                due.append((request, near_notice(to_row(token), q.substation, q.day, now, estimate.ahead,
                                                 estimate.p50_s)))
        return due, ended
