"""The worker process plans run in: jobs in on one queue, progress and results out on another.

Started by ``plans.PlanRunner`` (spawned, so it shares nothing with the server's event loop and
threads); it imports the simulator on its first job, not the server, and ends when the server
asks, terminates it, or goes away itself (it checks every second, so a server killed outright
leaves no worker behind).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import tempfile
import traceback
from pathlib import Path
from typing import Any

PARENT_CHECK_S = 1.0
PROGRESS_STEP = 0.01   # progress is sent when it has moved this much


def work(jobs: multiprocessing.Queue, events: multiprocessing.Queue) -> None:
    """Run each job ``(plan id, scenario, inputs)`` as it comes, sending ``("progress", id,
    share)``, then ``("done", id, result, plots)`` or ``("failed", id, message)``; ``None``
    ends the loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the server's to handle
    parent = multiprocessing.parent_process()
    while parent is None or parent.is_alive():
        try:
            job = jobs.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            continue
        if job is None:
            return
        plan_id, scenario, inputs = job
        try:
            result, plots = _run(plan_id, scenario, inputs, events)
        except Exception as exc:  # noqa: BLE001 - the page is told, the worker lives on
            events.put(("failed", plan_id, f"{type(exc).__name__}: {exc}",
                        traceback.format_exc(limit=8)))
        else:
            events.put(("done", plan_id, result, plots))


def _run(plan_id: str, scenario: Any, inputs: Any,
         events: multiprocessing.Queue) -> tuple[dict[str, Any], dict[str, bytes]]:
    from loadtests.capacity.plan import PLOTS, run_plan

    sent = [-1.0]

    def progress(share: float) -> None:
        if share >= 1.0 or share - sent[0] >= PROGRESS_STEP:
            sent[0] = share
            events.put(("progress", plan_id, share))

    with tempfile.TemporaryDirectory(prefix="counter-plan-") as where:
        out = Path(where)
        result = run_plan(scenario, inputs, out, progress)
        plots = {name: (out / PLOTS[name]).read_bytes() for name in result["plots"]}
    return result, plots
