"""Locust load test of an end-of-month day at the counters.

User classes:
  * CounterUser (one per counter, 40 by default): the cashier's flow: call next, start, take
    the payment, complete, with service times from the scenario (scaled by PEAK_TIME_SCALE).
  * ArrivalUser: consumers arriving and taking tokens; the load shape sets how many at once.
  * BoardUser: hall boards holding the live WebSocket open (synchronous websocket-client,
    since locust runs on gevent), reporting how late each delta arrives as request type "WS".

Environment: PEAK_ADMIN_KEY (required), PEAK_SHAPE (end-of-month | stress), PEAK_DURATION
(seconds), PEAK_ARRIVALS (peak arriving users), PEAK_BOARDS, PEAK_CONFIG (the scenario the
server runs: peak-load writes one with its service times already scaled, so a 90 s payment
takes 0.9 s and the server learns what the counters really do), PEAK_COVERAGE (a file: each
token's estimate at issue and when it was called, for the estimate coverage).

Names come from the scenario: its counters, substations and services, and the paid service
(``[demand] payment_service``) is the one that takes a payment.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from datetime import datetime

import websocket
from locust import FastHttpUser, LoadTestShape, User, constant, events, task

from counter_server.config import load_scenario
from loadtests import shapes
from loadtests.peak_load import IDLE_POLL_S

SCENARIO = load_scenario(os.environ.get("PEAK_CONFIG") or None)
COUNTERS = list(SCENARIO.counters.values())
SUBSTATIONS = list(SCENARIO.substations)
ADMIN = {"Authorization": f"Bearer {os.environ.get('PEAK_ADMIN_KEY', '')}"}
PAID = SCENARIO.payment_service
COVERAGE_FILE = os.environ.get("PEAK_COVERAGE")
DURATION = float(os.environ.get("PEAK_DURATION", "60"))
ARRIVALS = int(os.environ.get("PEAK_ARRIVALS", "20"))
BOARDS = int(os.environ.get("PEAK_BOARDS", "10"))
_next_counter = itertools.count()
_lock = threading.Lock()
_given: dict[str, dict] = {}   # token id -> its estimate at issue and when it was called


@events.test_stop.add_listener
def _write_coverage(**_kw) -> None:
    if COVERAGE_FILE:
        with open(COVERAGE_FILE, "w", encoding="utf-8") as handle:
            json.dump({"ended": time.monotonic(), "tokens": list(_given.values())}, handle)


def service_seconds(service_id: str) -> float:
    """A service time drawn between the scenario's min and max around its mean (the
    scenario peak-load writes is already scaled)."""
    service = SCENARIO.services[service_id]
    low = service.min_service_s or service.mean_service_s / 2
    high = service.max_service_s or service.mean_service_s * 1.5
    mode = min(high, max(low, 3 * service.mean_service_s - low - high))   # keeps the mean
    return random.triangular(low, high, mode)


class CounterUser(FastHttpUser):
    fixed_count = len(COUNTERS)
    wait_time = constant(0)

    def on_start(self) -> None:
        with _lock:
            self.counter = COUNTERS[next(_next_counter) % len(COUNTERS)]

    @task
    def serve_next(self) -> None:
        with self.client.post(f"/api/v1/counters/{self.counter.id}/next", headers=ADMIN,
                              name="/counters/[id]/next", catch_response=True) as resp:
            if resp.status_code == 409:          # a token from a failed round is still here
                token = resp.json()["error"]["token"]
                self._finish(token)
                resp.success()
                return
            token = resp.json().get("token") if resp.status_code == 200 else None
        if token is None:
            time.sleep(IDLE_POLL_S)              # nobody waits for this counter
            return
        if token["id"] in _given:
            _given[token["id"]]["called"] = time.monotonic()
        self._post(f"/api/v1/tokens/{token['id']}/start", "/tokens/[id]/start")
        time.sleep(service_seconds(token["service"]))
        if token["service"] == PAID:
            self._post("/api/v1/payments", "/payments", json={
                "token_id": token["id"], "account": f"{random.randint(10**9, 10**10 - 1)}",
                "amount_paise": random.randint(10_000, 500_000), "mode": "cash"})
        self._finish(token["id"])

    def _finish(self, token_id: str) -> None:
        self._post(f"/api/v1/tokens/{token_id}/complete", "/tokens/[id]/complete")

    def _post(self, path: str, name: str, **kw) -> None:
        self.client.post(path, headers=ADMIN, name=name, **kw)


class ArrivalUser(FastHttpUser):
    """A consumer arriving at a substation and taking a token (the shape sets how many)."""

    weight = 1

    def wait_time(self) -> float:
        return random.expovariate(1.0) * 2

    @task
    def take_token(self) -> None:
        substation = random.choice(SUBSTATIONS)
        offered = SCENARIO.substations[substation].services
        service = random.choices(offered, weights=[8 if s == PAID else 1 for s in offered])[0]
        with self.client.post(f"/api/v1/substations/{substation}/tokens", headers=ADMIN,
                              json={"service": service}, name="/substations/[id]/tokens",
                              catch_response=True) as resp:
            if resp.status_code == 409:          # refused at the door: a correct answer
                resp.success()
            elif resp.status_code == 201:
                token = resp.json().get("token") or {}
                estimate = token.get("estimate") or {}
                if estimate.get("p90_s") is not None:
                    _given[token["id"]] = {"issued": time.monotonic(), "p50_s": estimate["p50_s"],
                                           "p90_s": estimate["p90_s"], "called": None}


class BoardUser(User):
    """A hall board: holds the live channel open and reports each delta's lateness."""

    fixed_count = BOARDS
    wait_time = constant(1)

    def on_start(self) -> None:
        substation = random.choice(SUBSTATIONS)
        url = self.host.replace("http", "ws", 1) + f"/api/v1/substations/{substation}/live"
        self.ws = websocket.create_connection(url, timeout=5)
        self.ws.recv()                           # the snapshot
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except Exception:  # noqa: BLE001 - the run is over or the server went away
                return
            if not text:                         # the server closed the socket: the run is over
                return
            received = time.time()
            message = json.loads(text)
            if message.get("type") != "delta":
                continue
            issued = datetime.fromisoformat(message["events"][-1]["at"]).timestamp()
            events.request.fire(request_type="WS", name="delta lateness",
                                response_time=max(0.0, (received - issued) * 1000),
                                response_length=len(text), exception=None, context={})

    @task
    def idle(self) -> None:
        time.sleep(1)

    def on_stop(self) -> None:
        self.ws.close()


class PeakShape(LoadTestShape):
    """End-of-month day or stress ramp, chosen with PEAK_SHAPE; counters and boards stay."""

    def tick(self):
        t = self.get_run_time()
        fixed = len(COUNTERS) + BOARDS
        if os.environ.get("PEAK_SHAPE", "end-of-month") == "stress":
            arriving = shapes.stress(t, DURATION, ARRIVALS)
        else:
            arriving = shapes.end_of_month(t, DURATION, ARRIVALS)
        if arriving == 0:
            return None
        return fixed + arriving, 50
