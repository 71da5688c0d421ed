"""One bounded wait: poll until something holds, or fail saying what never happened.

Tests, benchmarks and the reliability suite wait for real processes and sockets; each wait
has a timeout and a name, so a hang becomes a failure that says what it was waiting for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(TimeoutError):
    """What was waited for did not happen in time; ``last`` is the probe's last answer, for a
    caller that reports what it got rather than fails."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        seen = repr(last)
        super().__init__(f"waited {timeout:g} s for {what}; last seen: "
                         f"{seen if len(seen) <= 300 else seen[:300] + '...'}")
        self.last = last


def wait_until(probe: Callable[[], T], *, what: str, timeout: float = 10.0,
               done: Callable[[T], object] = bool, interval: float = 0.05) -> T:
    """Call ``probe`` until ``done(its answer)`` holds, and return that answer.

    Blocks the thread: for code that is not on an event loop (use ``wait_until_async`` there,
    or the loop, and any server on it, stops while this sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if done(answer):
            return answer
        if time.monotonic() >= deadline:
            raise WaitTimedOut(what, timeout, answer)
        time.sleep(interval)


async def wait_until_async(probe: Callable[[], T | Awaitable[T]], *, what: str, timeout: float = 10.0,
                           done: Callable[[T], object] = bool, interval: float = 0.05) -> T:
    """``wait_until`` on the event loop: ``probe`` may be a coroutine function (an HTTP call)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if inspect.isawaitable(answer):
            answer = await answer
        if done(answer):
            return answer
        if time.monotonic() >= deadline:
            raise WaitTimedOut(what, timeout, answer)
        await asyncio.sleep(interval)
