"""Plans: the month simulation ops run from their page, one at a time, in a worker process.

A plan is peak-sim's focused run (``loadtests.capacity.plan``) of the figures ops choose. It
takes seconds of CPU, so it runs in a spawned worker process, never on the event loop; the
worker is started with the first plan and kept for the next. Progress and results come back on
a queue, read whenever someone asks about a plan (the page asks a few times a second while one
runs). The latest ``KEEP`` plans are kept in memory, plots and all; a restart forgets them.

The simulator needs numpy and matplotlib (``pip install 'counter-server[load]'``): without them,
or without a ``[demand]`` table to simulate, plans are refused saying so, and the rest of the
server runs as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..config import Scenario
from ..services import InvalidField
from . import plan_worker

if TYPE_CHECKING:   # the simulator (numpy) is imported when plans are first asked about
    from loadtests.capacity.plan import PlanInputs, PlanLimits

log = logging.getLogger(__name__)

KEEP = 5
STOP_WAIT_S = 1.0    # on shutdown: how long the worker gets to end after being told to
INSTALL_HINT = "pip install 'counter-server[load]'"


class PlanRunning(Exception):
    """A plan was asked for while another runs: one at a time (the machine's cores serve halls)."""

    def __init__(self, running: "Plan") -> None:
        super().__init__("a plan is running")
        self.running = running


class PlansUnavailable(Exception):
    """Plans cannot run on this server: the simulator's libraries or the scenario's figures lack."""


@dataclass
class Plan:
    """One run: what was asked, how far it is, and once done its result and plots (PNG bytes)."""

    id: str
    inputs: dict[str, Any]
    started_at: float
    state: str = "running"          # running, done or failed
    progress: float = 0.0
    finished_at: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    plots: dict[str, bytes] = field(default_factory=dict)

    def as_json(self, summary: bool = False) -> dict[str, Any]:
        """The plan as the API gives it (``summary``: without its result); plots as links."""
        body: dict[str, Any] = {"id": self.id, "state": self.state, "progress": round(self.progress, 3),
                                "inputs": self.inputs, "started_at": _moment(self.started_at),
                                "finished_at": _moment(self.finished_at)}
        if self.error is not None:
            body["error"] = self.error
        if self.result is not None and not summary:
            body["result"] = self.result
            body["plots"] = {name: f"/api/v1/ops/plans/{self.id}/plots/{name}.png" for name in self.plots}
        return body


class PlanRunner:
    """The plans of one server and the worker process they run in."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.time) -> None:
        self.scenario = scenario
        self.clock = clock
        self.plans: OrderedDict[str, Plan] = OrderedDict()
        self._limits: PlanLimits | None = None
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._jobs: multiprocessing.Queue | None = None
        self._events: multiprocessing.Queue | None = None

    def limits(self) -> PlanLimits:
        """The scenario's figures and bounds for a plan (``plan.PlanLimits``), worked out once;
        ``PlansUnavailable`` says why there are none."""
        if self._limits is None:
            try:
                from loadtests.capacity.demand import DemandError
                from loadtests.capacity.plan import plan_limits
            except ImportError as exc:
                raise PlansUnavailable(f"Plans need the simulator's libraries ({exc.name} is not "
                                       f"installed): {INSTALL_HINT}.") from None
            try:
                self._limits = plan_limits(self.scenario)
            except DemandError as exc:
                raise PlansUnavailable(f"The scenario's [demand] figures cannot be simulated: {exc}.") from None
        return self._limits

    def checked(self, asked: Mapping[str, Any]) -> PlanInputs:
        """The figures asked for (None: the scenario's), checked against the scenario
        (``plan.PlanInputs``); ``InvalidField`` names the first that does not fit."""
        self.limits()
        from loadtests.capacity.plan import PlanInputError, checked_inputs

        try:
            return checked_inputs(self.scenario, **asked)
        except PlanInputError as exc:
            raise InvalidField(exc.field, exc.message) from None

    def start(self, inputs: PlanInputs) -> Plan:
        """Send the plan to the worker (started now if it is not running); ``PlanRunning``
        while another plan runs."""
        running = self.running()
        if running is not None:
            raise PlanRunning(running)
        if self._process is None or not self._process.is_alive():
            self._start_worker()
        plan = Plan(id=f"plan_{secrets.token_hex(6)}", inputs=inputs.as_json(), started_at=self.clock())
        self.plans[plan.id] = plan
        while len(self.plans) > KEEP:
            self.plans.popitem(last=False)
        self._jobs.put((plan.id, self.scenario, inputs))
        return plan

    def get(self, plan_id: str) -> Plan | None:
        self._read_events()
        return self.plans.get(plan_id)

    def running(self) -> Plan | None:
        """The plan running now, if any (a worker that died takes its plan with it: failed)."""
        self._read_events()
        plan = next((p for p in self.plans.values() if p.state == "running"), None)
        if plan is not None and (self._process is None or not self._process.is_alive()):
            self._read_events()      # what it sent before it ended
            if plan.state == "running":
                code = self._process.exitcode if self._process is not None else None
                self._finish(plan, "failed", error=f"The simulation's worker process ended (exit code {code}).")
                return None
        return plan

    def recent(self) -> list[Plan]:
        """The plans kept, newest first."""
        self.running()
        return list(reversed(self.plans.values()))

    def close(self) -> None:
        """Stop the worker: told to end, then terminated if it is in the middle of a plan, so a
        shutdown never waits for a simulation (blocks up to about ``2 x STOP_WAIT_S``)."""
        process, jobs, events = self._process, self._jobs, self._events
        self._process = self._jobs = self._events = None
        if process is None:
            return
        if process.is_alive():
            jobs.put(None)
            process.join(0.05)
            if process.is_alive():
                process.terminate()
                process.join(STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join(STOP_WAIT_S)
        for q in (jobs, events):
            q.cancel_join_thread()
            q.close()

    def _start_worker(self) -> None:
        self.close()
        self._jobs, self._events = self._context.Queue(), self._context.Queue()
        self._process = self._context.Process(target=plan_worker.work, args=(self._jobs, self._events),
                                              name="counter-server plans", daemon=True)
        self._process.start()

    def _read_events(self) -> None:
        if self._events is None:
            return
        while True:
            try:
                event = self._events.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return
            kind, plan_id, *rest = event
            plan = self.plans.get(plan_id)
            if plan is None or plan.state != "running":
                continue
            if kind == "progress":
                plan.progress = max(plan.progress, min(float(rest[0]), 1.0))
            elif kind == "done":
                result, plots = rest
                self._finish(plan, "done", result=result, plots=plots)
            else:
                log.warning("plan %s failed in the worker: %s", plan_id, rest[-1])
                self._finish(plan, "failed", error=rest[0])

    def _finish(self, plan: Plan, state: str, **found: Any) -> None:
        plan.state = state
        plan.finished_at = self.clock()
        if state == "done":
            plan.progress = 1.0
        for name, value in found.items():
            setattr(plan, name, value)


def _moment(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
