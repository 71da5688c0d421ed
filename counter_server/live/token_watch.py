"""Phones following their own token live.

A phone needs its token's place and wait, not the hall: after a change at its substation,
one read of the queue answers every phone watching a token there, at most once per
``interval_s`` for that substation, however many phones watch. The answer is written to each
phone's socket there and then when its link keeps up (a task woken per phone cost more than the
write: the head of a line of a thousand giving up moves every phone behind it); a phone whose
link is backed up keeps only the newest answer for its own writer, so a slow link never builds a
backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..queueing import Estimate, SubstationQueue, Token
from ..store import Committed, Store

log = logging.getLogger(__name__)

View = tuple[Token, Estimate | None]


@dataclass(eq=False)
class Watcher:
    """One phone: the newest view of its token, and a flag raised when it changes and could not
    be written at once (``deliver`` writes it and says whether it could)."""

    token_id: str
    deliver: Callable[[View], bool]
    latest: View | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, view: View) -> None:
        if view != self.latest:
            self.latest = view
            if self.changed.is_set() or not self.deliver(view):
                self.changed.set()


class TokenWatch:
    def __init__(self, store: Store, interval_s: float = 1.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self._watchers: dict[tuple[str, str], set[Watcher]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    async def add(self, token: Token, deliver: Callable[[View], bool]) -> Watcher:
        """Watch ``token``, whose current view goes out at once through ``deliver``."""
        watcher = Watcher(token.id, deliver)
        key = (token.substation, token.day)
        self._watchers.setdefault(key, set()).add(watcher)
        views = await self.store.read_queue(*key, _views_of({token.id}))
        if token.id in views:
            watcher.offer(views[token.id])
        return watcher

    def remove(self, token: Token, watcher: Watcher) -> None:
        key = (token.substation, token.day)
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[key]

    def on_commit(self, committed: Committed) -> None:
        """A store listener: a change where phones watch makes their views stale."""
        key = (committed.substation, committed.day)
        if key in self._watchers:
            self._dirty.add(key)
            self._wake.set()

    async def _run(self) -> None:
        # Each hall's phones are answered at most once per interval_s, counted per hall: a
        # change at one hall is never held back because another hall was answered just now.
        due: dict[tuple[str, str], float] = {}
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            waiting = [due[key] for key in self._dirty if due.get(key, now) > now]
            if len(waiting) == len(self._dirty):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(waiting) - now if waiting else None):
                        await self._wake.wait()
                continue
            ready = {key for key in self._dirty if due.get(key, now) <= now}
            self._dirty -= ready
            for key in ready:
                due[key] = now + self.interval_s
                await self._answer(key)
            for key in [k for k, at in due.items() if at <= now and k not in self._dirty]:
                del due[key]

    async def _answer(self, key: tuple[str, str]) -> None:
        """One read of the hall's queue, offered to every phone watching a token there."""
        watchers = self._watchers.get(key)
        if not watchers:
            return
        try:
            views = await self.store.read_queue(*key, _views_of({w.token_id for w in watchers}))
        except Exception:  # noqa: BLE001 - one failed read must not end every phone's feed
            log.exception("reading token views of %s failed", key)
            self._dirty.add(key)
            return
        for watcher in list(watchers):
            if watcher.token_id in views:
                watcher.offer(views[watcher.token_id])


def _views_of(token_ids: set[str]) -> Callable[[SubstationQueue], dict[str, View]]:
    def read(q: SubstationQueue) -> dict[str, View]:
        # One walk of the line answers many phones; a few are cheaper one by one.
        every = q.estimates() if len(token_ids) > 8 else None
        found = {}
        for token_id in token_ids:
            token = q.tokens.get(token_id)
            if token is not None:
                found[token_id] = (token, every.get(token_id) if every is not None
                                   else q.estimate_for(token))
        return found

    return read
