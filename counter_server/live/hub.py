"""The broadcast hub: every committed change becomes one delta on its substation's channel and
on the ops channel, in commit order, numbered with the store's event sequence.

Each delta carries ``seq`` and ``prev`` (the channel's previous seq), so a board can tell when
it missed one. A channel keeps a backlog of recent deltas: a board reconnecting with
``since=SEQ`` gets what it missed, or a fresh snapshot when the backlog no longer reaches back.
Each subscriber has a bounded buffer; one that falls too far behind is dropped, so a slow board
never holds up the others. The hub itself does no I/O: handlers move its text onto sockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Any

import orjson

from ..config import Scenario
from .boards import BoardTally
from ..queueing import DomainEvent, HallView
from ..services.nearby import nearest
from ..store import Committed
from ..shapes import hall_json, iso, public_token_json

SCHEMA_VERSION = 1
OPS_CHANNEL = "*"
BOARDS_COALESCE_S = 0.25      # boards' reports reach ops at most this often


@dataclass(eq=False)
class Subscriber:
    """One connected board: its channel and the bounded buffer of texts waiting to be sent."""

    channel: str
    buffer: int
    queue: asyncio.Queue[str | None] = field(init=False)
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.buffer + 1)

    def offer(self, text: str) -> None:
        if self.dropped:
            return
        if self.queue.qsize() >= self.buffer:
            self.drop()
            return
        self.queue.put_nowait(text)

    def drop(self) -> None:
        """Fell too far behind: discard what it has not read and tell its writer to hang up."""
        self.dropped = True
        self.end()

    def end(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class Channel:
    name: str
    backlog: deque[tuple[int, int, str]]
    last_seq: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)


class LiveHub:
    def __init__(
        self,
        scenario: Scenario,
        *,
        backlog: int = 1000,
        client_buffer: int = 256,
        heartbeat_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = scenario
        self.client_buffer = client_buffer
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        names = [*scenario.substations, OPS_CHANNEL]
        self._channels = {n: Channel(n, deque(maxlen=backlog)) for n in names}
        self._halls: dict[str, HallView] = {}
        self.published = 0
        self.dropped = 0

    # -- feeding -----------------------------------------------------------------------

    def prime(self, halls: list[HallView], seq: int) -> None:
        """Start from the store's state: the halls as committed, numbered from ``seq``."""
        for hall in halls:
            self._halls[hall.substation] = hall
        for channel in self._channels.values():
            channel.last_seq = max(channel.last_seq, seq)

    def update_hall(self, hall: HallView) -> None:
        """Replace a cached hall without a delta. A newer day's hall (the day boundary passed
        with no change yet) goes to its boards and to ops as a fresh snapshot, numbered where
        their channels are, so no screen carries a closed day into the morning."""
        old = self._halls.get(hall.substation)
        self._halls[hall.substation] = hall
        if old is not None and hall.day > old.day:
            for name in (hall.substation, OPS_CHANNEL):
                channel = self._channels[name]
                if channel.subscribers:
                    text = self.snapshot(name)
                    for subscriber in list(channel.subscribers):
                        subscriber.offer(text)

    def hall(self, substation: str) -> HallView | None:
        return self._halls.get(substation)

    def publish(self, committed: Committed) -> None:
        """Turn a committed change into a delta on its substation's channel and the ops one.

        Live channels carry today's halls only: a change to another day's queue (a booking
        for tomorrow, slots published ahead, yesterday closed at start-up) changes nothing a
        hall shows today, so it sends nothing; its hall view must never replace today's."""
        if committed.day != self.scenario.day_of(self.clock()):
            return
        self._halls[committed.substation] = committed.hall
        seq = committed.events[-1][0]
        # Encoded at once, and once for both channels (only "prev" differs, spliced onto the
        # end). Encoding only when someone watches kept every backlog entry's hall alive as
        # objects: the garbage collector's full passes then took 120-190 ms under load.
        encoded = self._delta_json(committed)[:-1]
        for name in (committed.substation, OPS_CHANNEL):
            channel = self._channels.get(name)
            if channel is None:
                continue
            text = f'{encoded},"prev":{channel.last_seq}}}'
            channel.backlog.append((seq, channel.last_seq, text))
            channel.last_seq = seq
            for subscriber in list(channel.subscribers):
                subscriber.offer(text)
                if subscriber.dropped:
                    channel.subscribers.discard(subscriber)
                    self.dropped += 1
        self.published += 1

    def _delta_json(self, committed: Committed) -> str:
        """The delta as JSON text, by orjson: a fifth of the time the standard library took,
        which was a twentieth of the server's time under a peak of issues."""
        return orjson.dumps({
            "type": "delta",
            "v": SCHEMA_VERSION,
            "seq": committed.events[-1][0],
            "substation": committed.substation,
            "events": [self._event_json(s, e) for s, e in committed.events],
            "hall": hall_json(committed.hall, self.scenario),
        }).decode()

    def notify(self, name: str, body: dict[str, Any]) -> None:
        """An unsequenced message (e.g. the billing gateway's state) to one channel's boards."""
        channel = self._channels[name]
        text = json.dumps({"v": SCHEMA_VERSION, **body}, ensure_ascii=False)
        for subscriber in list(channel.subscribers):
            subscriber.offer(text)

    def _event_json(self, seq: int, event: DomainEvent) -> dict[str, Any]:
        return {
            "seq": seq,
            "kind": event.kind,
            "at": iso(event.at, self.scenario.timezone, "milliseconds"),
            "counter": event.counter,
            "token": public_token_json(event.token) if event.token else None,
        }

    # -- subscribing -------------------------------------------------------------------

    def subscribe(self, name: str, since: int | None = None) -> tuple[list[str], Subscriber]:
        """The texts to send first (missed deltas, or a snapshot) and the new subscriber."""
        channel = self._channels[name]
        subscriber = Subscriber(name, self.client_buffer)
        channel.subscribers.add(subscriber)
        return self._catch_up(channel, since), subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._channels[subscriber.channel].subscribers.discard(subscriber)

    def close_all(self) -> None:
        for channel in self._channels.values():
            for subscriber in list(channel.subscribers):
                subscriber.end()
            channel.subscribers.clear()

    def connections(self) -> int:
        return sum(len(c.subscribers) for c in self._channels.values())

    def _catch_up(self, channel: Channel, since: int | None) -> list[str]:
        if since is not None:
            if since == channel.last_seq:
                return []
            if channel.backlog and channel.backlog[0][1] <= since < channel.last_seq:
                return [text for seq, _, text in channel.backlog if seq > since]
        return [self.snapshot(channel.name)]

    # -- messages ----------------------------------------------------------------------

    def snapshot(self, name: str) -> str:
        channel = self._channels[name]
        body: dict[str, Any] = {"type": "snapshot", "v": SCHEMA_VERSION, "seq": channel.last_seq,
                                "timezone": self.scenario.timezone.key}
        if name == OPS_CHANNEL:
            body["halls"] = [hall_json(h, self.scenario) for h in self._halls.values()]
        else:
            body["substation"] = name
            body["hall"] = hall_json(self._halls[name], self.scenario) if name in self._halls else None
            body["nearby"] = self.nearby(name)
            body["online"] = self._online()
        return json.dumps(body, ensure_ascii=False)

    def heartbeat(self, name: str) -> str:
        channel = self._channels[name]
        body: dict[str, Any] = {
            "type": "heartbeat",
            "v": SCHEMA_VERSION,
            "seq": channel.last_seq,
            "at": datetime.fromtimestamp(self.clock(), self.scenario.timezone).isoformat(
                timespec="seconds"),
            "interval_s": self.heartbeat_s,
        }
        if name != OPS_CHANNEL:
            body["nearby"] = self.nearby(name)
        return json.dumps(body, ensure_ascii=False)

    def nearby(self, name: str, service: str | None = None) -> list[dict[str, Any]]:
        """The nearest substations that offer ``service`` (the paid one), with their current
        wait for it; none when the scenario takes no payments."""
        service = service or self.scenario.payment_service
        if service is None:
            return []
        found = []
        for other, km in nearest(self.scenario, name, offering=service):
            hall = self._halls.get(other.id)
            view = next((s for s in hall.services if s.id == service), None) if hall else None
            found.append({
                "substation": other.id,
                "name": other.name,
                "name_hi": other.name_hi,
                "distance_km": round(km, 1),
                "waiting": view.waiting if view else 0,
                "estimate": {"p50_s": view.estimate.p50_s, "p90_s": view.estimate.p90_s} if view else None,
            })
        return found

    def _online(self) -> dict[str, Any]:
        online = self.scenario.online
        paid = self.scenario.services.get(self.scenario.payment_service or "")
        return {"hint_after_s": online.hint_after_s, "text": online.text, "text_hi": online.text_hi,
                "payment_service": paid.id if paid else None,
                "payment_service_name": paid.name if paid else None,
                "payment_service_name_hi": paid.name_hi if paid else None}

    # -- what the hall boards report of themselves (their voice) -----------------------

    @cached_property
    def _board_tally(self) -> BoardTally:
        return BoardTally(list(self.scenario.substations))

    def board_joined(self, subscriber: Subscriber) -> None:
        """A hall board connected to its substation's channel."""
        if self._board_tally.joined(subscriber, subscriber.channel):
            self._boards_changed()

    def board_reported(self, subscriber: Subscriber, voice: str) -> None:
        """A hall board said which voice it announces calls with ("hi", "en" or "chime")."""
        if self._board_tally.reported(subscriber, voice):
            self._boards_changed()

    def board_left(self, subscriber: Subscriber) -> None:
        if self._board_tally.left(subscriber):
            self._boards_changed()

    def boards_json(self) -> str:
        """The ops channel's ``boards`` message: per substation, boards connected and lacking."""
        return json.dumps({"type": "boards", "v": SCHEMA_VERSION, "boards": self._board_tally.counts()},
                          ensure_ascii=False)

    def _boards_changed(self) -> None:
        # Coalesced: a restart reconnects every board at once, and ops needs the sum, not each.
        tally = self._board_tally
        if tally.flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish_boards()
            return
        tally.flush_pending = True
        loop.call_later(BOARDS_COALESCE_S, self._publish_boards)

    def _publish_boards(self) -> None:
        tally = self._board_tally
        tally.flush_pending = False
        counts = tally.counts()
        if counts == tally.published:
            return
        tally.published = counts
        self.notify(OPS_CHANNEL, {"type": "boards", "boards": counts})
