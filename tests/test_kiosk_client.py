"""The cashier's client against a real server process: the library, the command line, the
offline journal (server stopped and started again), typed errors and Retry-After."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from counter_server.config import Scenario, ScenarioCounter, load_scenario
from counter_server.services.keys import KeyService
from counter_server.store.sqlite import SQLiteStore
from kiosk_client import cli
from kiosk_client.client import Call, KioskClient, Retry, ServerError, Unreachable
from kiosk_client.desk import Desk, NeedsServer
from kiosk_client.journal import Journal
from kiosk_client.slip import CUT, INIT

from testkit.billing import refusing_billing
from testkit.processes import ROOT, ServerProcess, free_port
from testkit.scenarios import paid_service
from testkit.waiting import wait_until_async

ACCOUNT = "2140012345"


async def cashier_key(server: ServerProcess, counter: str) -> str:
    """A cashier key bound to ``counter``, written into the running server's data by its own
    KeyService, as ``counter-server keys create`` does (without paying for a process start)."""
    scenario = load_scenario(server.config)
    store = SQLiteStore(server.data_dir / "counter.db", scenario.policy)
    await store.open()
    try:
        plain, _ = await KeyService(store, scenario).create("cashier", counter)
    finally:
        await store.close()
    return plain


def kiosk_env(server: ServerProcess, key: str, journal: Path) -> dict[str, str]:
    return {**os.environ, "KIOSK_SERVER": server.url, "KIOSK_KEY": key, "KIOSK_JOURNAL": str(journal),
            "PYTHONUNBUFFERED": "1"}


def kiosk(env: dict[str, str], *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    """``python -m kiosk_client.cli ARGS`` in its own process, as a cashier's shell runs it."""
    proc = subprocess.run([sys.executable, "-m", "kiosk_client.cli", "--timeout", "2", "--retries", "1", *args],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == rc, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def kiosk_json(env: dict[str, str], *args: str, rc: int = 0) -> Any:
    return json.loads(kiosk(env, "--json", *args, rc=rc).stdout)


def in_process(server: ServerProcess, key: str, journal: Path) -> Callable[..., Awaitable[Any]]:
    """``kiosk --json ARGS`` through ``cli.run`` in this process: the same code, no start-up cost."""
    base = ["--server", server.url, "--key", key, "--journal", str(journal), "--timeout", "2",
            "--retries", "1", "--json"]

    async def kiosk_here(*args: str, rc: int = 0) -> Any:
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run([*base, *args], out, err)
        assert code == rc, (args, code, out.getvalue(), err.getvalue())
        return json.loads(out.getvalue())

    return kiosk_here


async def _admin(server: ServerProcess, path: str) -> Any:
    """A GET with the admin key: what the server holds, not what the kiosk believes."""
    async with KioskClient(server.url, server.admin_key, retries=3) as admin:
        return await admin.send(Call("GET", path))


async def test_cashier_flow_through_the_client(server_process: ServerProcess):
    server_process.start()
    key = await cashier_key(server_process, "S01-C1")
    async with KioskClient(server_process.url, key, timeout=5, retries=2) as client:
        me = await client.me()
        assert (me["role"], me["counter"], me["substation"]) == ("cashier", "S01-C1", "S01")
        assert (await client.health())["billing"]["state"] in ("up", "slow", "down")

        first = await client.issue("S01", "bill_payment", idem="slip-0001")
        assert (await client.issue("S01", "bill_payment", idem="slip-0001"))["id"] == first["id"]   # a retry
        senior = await client.issue("S01", "bill_payment", "senior")
        assert (first["number"], senior["number"]) == ("B-001", "B-002")
        assert first["estimate"]["ahead"] == 0 and first["estimate"]["p90_s"] >= first["estimate"]["p50_s"]
        queue = await client.queue("S01")
        assert [t["number"] for t in queue["tokens"]] == ["B-002", "B-001"]   # the senior goes first
        assert queue["waiting"] == 2 and all(t["estimate"] for t in queue["tokens"])

        called = await client.call_next("S01-C1")
        assert (called["number"], called["status"], called["counter"]) == ("B-002", "called", "S01-C1")
        with pytest.raises(ServerError) as busy:
            await client.call_next("S01-C1")
        assert (busy.value.status, busy.value.code) == (409, "counter_busy")
        assert busy.value.details["token"] == called["id"] and "B-002" in busy.value.message
        with pytest.raises(ServerError) as early:
            await client.no_show(called["id"])
        assert early.value.code == "illegal_transition" and "recall" in early.value.details["allowed"]
        assert (await client.recall(called["id"]))["recalls"] == 1
        assert (await client.start(called["id"]))["status"] == "serving"

        bill = await client.bill(ACCOUNT)
        amount = bill["bill"]["amount_paise"]
        payment = await client.pay(called["id"], ACCOUNT, amount, "cash", idem="pay-0001")
        assert payment["status"] == "queued" and payment["receipt"].startswith("PROV-S01-")
        assert (await client.pay(called["id"], ACCOUNT, amount, "cash", idem="pay-0001"))["id"] == payment["id"]
        with pytest.raises(ServerError) as reused:
            await client.pay(called["id"], ACCOUNT, amount + 1, "cash", idem="pay-0001")
        assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
        assert (await client.complete(called["id"]))["status"] == "done"
        assert (await client.token(called["id"]))["status"] == "done"
        assert (await client.payment(payment["id"]))["amount_paise"] == amount

        nxt = await client.call_next("S01-C1")
        moved = await client.transfer(nxt["id"], service="complaint")
        assert (moved["number"], moved["service"], moved["status"]) == ("B-001", "complaint", "waiting")
        assert await client.call_next("S01-C1") is None        # C1 does not serve complaints


async def test_errors_are_typed_with_the_servers_code_and_message(server_process: ServerProcess):
    server_process.start()
    key = await cashier_key(server_process, "S01-C1")
    async with KioskClient(server_process.url, "not-a-key") as stranger:
        with pytest.raises(ServerError) as unknown:
            await stranger.me()
    assert (unknown.value.status, unknown.value.code) == (401, "invalid_key")
    assert "unknown or revoked" in unknown.value.message and not unknown.value.transient
    async with KioskClient(server_process.url, key) as client:
        with pytest.raises(ServerError) as missing:
            await client.token("t_nope")
        assert missing.value.status == 404 and missing.value.code.endswith("not_found")
        with pytest.raises(ServerError) as invalid:
            await client.issue("S01", "no such service!")
        assert (invalid.value.status, invalid.value.code, invalid.value.details["field"]) == (
            422, "invalid_field", "service")
        with pytest.raises(ServerError) as other:
            await client.call_next("S01-C2")
        assert (other.value.status, other.value.code) == (403, "forbidden")

    retries: list[Retry] = []
    async with KioskClient(f"http://127.0.0.1:{free_port()}", key, retries=2, on_retry=retries.append) as lost:
        with pytest.raises(Unreachable) as away:
            await lost.issue("S01", "bill_payment")
    assert away.value.transient and len(retries) == 2
    assert all(r.call.path == "/api/v1/substations/S01/tokens" for r in retries)


async def test_retry_honours_retry_after_on_429(tmp_path: Path):
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=["--rate-limit", "1", "--rate-burst", "2"])
    server.start()
    try:
        key = await cashier_key(server, "S01-C1")
        async with KioskClient(server.url, key, retries=0) as impatient:
            await impatient.me()
            await impatient.me()
            with pytest.raises(ServerError) as limited:
                await impatient.me()
        assert (limited.value.status, limited.value.code) == (429, "rate_limited")
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        assert limited.value.transient

        waits: list[Retry] = []
        async with KioskClient(server.url, key, retries=3, on_retry=waits.append) as patient:
            began = time.monotonic()
            tokens = [await patient.issue("S01", "bill_payment") for _ in range(2)]
            took = time.monotonic() - began
        assert waits and all(w.reason == "429 rate_limited" and w.delay_s >= 1.0 for w in waits)
        assert took >= sum(w.delay_s for w in waits) >= 1.0
        queue = await _admin(server, "/api/v1/substations/S01/queue")
        assert sorted(t["id"] for t in queue["tokens"]) == sorted(t["id"] for t in tokens)  # once each
    finally:
        server.stop()


async def test_cashier_flow_through_the_cli(server_process: ServerProcess, tmp_path: Path):
    server_process.start()
    env = kiosk_env(server_process, await cashier_key(server_process, "S01-C1"), tmp_path / "journal.sqlite")
    slip = tmp_path / "slip.bin"
    issued = kiosk_json(env, "issue", "--priority", "senior", "--slip", str(slip))
    assert (issued["number"], issued["priority"], issued["status"]) == ("B-001", "senior", "waiting")
    printed = slip.read_bytes()
    assert printed.startswith(INIT) and b"B-001" in printed and printed.endswith(CUT)

    assert kiosk(env, "next").stdout.strip() == "B-001 called, Bill payment (senior citizen) at S01-C1"
    assert kiosk_json(env, "start")["status"] == "serving"
    busy = kiosk_json(env, "next", rc=1)["error"]
    assert (busy["http_status"], busy["code"], busy["status"]) == (409, "counter_busy", "serving")
    payment = kiosk_json(env, "pay", "--account", ACCOUNT, "--amount", "1,234.50")
    assert (payment["amount_paise"], payment["status"], payment["token_id"]) == (123450, "queued", issued["id"])
    assert kiosk(env, "complete").stdout.startswith("B-001 done")
    status = kiosk_json(env, "status")
    assert status["online"] is True and status["current"] is None and status["pending"] == 0
    assert "no token at counter s01-c1" in kiosk(env, "finish", rc=1).stderr.lower()


async def test_offline_actions_wait_in_the_journal_and_replay_once(server_process: ServerProcess,
                                                                    tmp_path: Path):
    server_process.start()
    journal = tmp_path / "journal.sqlite"
    kiosk_json = in_process(server_process, await cashier_key(server_process, "S01-C1"), journal)
    first = await kiosk_json("issue")
    with Journal(journal) as kept:                                # leased by itself, as the app does
        assert [lease.numbers for lease in kept.leases("S01-C1")] == [tuple(f"B-{n:03d}" for n in range(2, 12))]
    lease = await kiosk_json("lease", "--size", "3")
    assert lease["numbers"] == ["B-012", "B-013", "B-014"]
    later = await kiosk_json("issue")
    assert (first["number"], later["number"]) == ("B-001", "B-015")    # others skip the leases
    assert (await kiosk_json("next"))["number"] == "B-001"

    server_process.stop()
    assert (await kiosk_json("start"))["journal"]["status"] == "pending"
    payment = await kiosk_json("pay", "--account", ACCOUNT, "--paise", "50000")
    assert payment["status"] == "journaled" and payment["receipt"].startswith("OFFLINE-S01-C1-")
    assert (await kiosk_json("complete"))["status"] == "done"
    status = await kiosk_json("status")
    assert (status["online"], status["pending"], status["current"]) == (False, 3, None)
    offline = await kiosk_json("issue", "--slip", str(tmp_path / "slip.txt"), "--slip-format", "text")
    assert (offline["number"], offline["offline"]) == ("B-002", True)
    assert "Issued offline" in (tmp_path / "slip.txt").read_text()
    assert (await kiosk_json("next", rc=3))["error"]["code"] == "unreachable"   # calling needs the server
    assert (await kiosk_json("status"))["pending"] == 4

    server_process.start()
    report = await kiosk_json("sync")
    assert (len(report["done"]), report["failed"], report["pending"]) == (4, [], 0)
    answers = [e["answer"] for e in report["done"]]
    assert [e["kind"] for e in report["done"]] == ["start", "payment", "complete", "offline_token"]
    paid = answers[1]["payment"]
    reconciled = answers[3]["token"]
    assert (reconciled["number"], reconciled["status"]) == ("B-002", "waiting")
    assert reconciled["issued_at"] == offline["issued_at"]

    async def server_state() -> tuple[Any, ...]:
        token = await _admin(server_process, f"/api/v1/tokens/{first['id']}")
        queue = await _admin(server_process, "/api/v1/substations/S01/queue")
        outbox = (await _admin(server_process, "/api/v1/ops/billing"))["billing"]["outbox"]
        stored = await _admin(server_process, f"/api/v1/payments/{paid['id']}")
        waiting = sorted((t["issued_at"], t["number"]) for t in queue["tokens"])
        assert [t["number"] for t in queue["tokens"]] == [n for _, n in waiting]   # in issue order
        return (token["token"]["status"], sorted(n for _, n in waiting),
                outbox["queued"] + outbox["posted"] + outbox["failed"], stored["payment"]["amount_paise"])

    state = await server_state()
    assert state == ("done", ["B-002", "B-015"], 1, 50000)

    assert (await kiosk_json("sync"))["done"] == []                  # nothing left to send
    with sqlite3.connect(journal) as db:                          # as if the kiosk died before noting them
        db.execute("UPDATE entries SET status = 'pending'")
    again = await kiosk_json("sync")
    assert [e["answer"] for e in again["done"]] == answers        # the server's first answers, again
    assert await server_state() == state                          # and nothing applied twice


async def test_a_replay_refused_for_good_is_kept_as_failed(server_process: ServerProcess, tmp_path: Path):
    server_process.start()
    key = await cashier_key(server_process, "S01-C1")
    async with KioskClient(server_process.url, key, timeout=2, retries=1) as client:
        desk = Desk(client, Journal(tmp_path / "journal.sqlite"), lease_size=0)
        await desk.connect()
        assert (desk.counter, desk.substation, desk.counter_services) == ("S01-C1", "S01", ["bill_payment"])
        await desk.issue()
        called = (await desk.call_next()).token
        assert called is not None and desk.current()["id"] == called["id"]

        server_process.stop()
        no_show = await desk.no_show()                 # no recall first: the server will refuse it
        assert no_show.journaled and desk.pending_count() == 1 and desk.current() is None
        with pytest.raises(NeedsServer):
            await desk.call_next()
        assert (await desk.refresh()).server_text() == "OFFLINE, 1 pending"

        server_process.start()
        report = await desk.sync()
        assert report.done == [] and len(report.failed) == 1
        failed = report.failed[0]
        assert failed.error_code == "illegal_transition" and "Recall" in (failed.error_message or "")
        assert (desk.pending_count(), desk.failed_count()) == (0, 1)
        attempts = desk.journal.entries(status="failed")[0].attempts
        assert (await desk.sync()).failed == []        # kept for a person, not retried
        assert desk.journal.entries(status="failed")[0].attempts == attempts

        view = await desk.refresh()
        assert view.online and view.current is not None and view.current["id"] == called["id"]
        await desk.recall()
        assert (await desk.no_show()).token["status"] == "no_show"
        desk.journal.close()


async def test_offline_issue_without_leased_numbers_says_how_to_lease(server_process: ServerProcess,
                                                                      tmp_path: Path):
    """With no numbers leased (--lease-size 0 keeps the CLI from topping them up), an offline
    issue cannot wait in the journal: exit 3, and the words say how to lease next time."""
    server_process.start()
    env = kiosk_env(server_process, await cashier_key(server_process, "S01-C1"), tmp_path / "journal.sqlite")
    kiosk(env, "--lease-size", "0", "status")                     # met online once: the kiosk knows its counter
    server_process.stop()
    refused = kiosk(env, "--lease-size", "0", "issue", rc=3)
    assert "No leased Bill payment numbers are left" in refused.stderr
    assert "kiosk lease --service bill_payment" in refused.stderr and "by hand" in refused.stderr
    as_json = kiosk_json(env, "--lease-size", "0", "issue", rc=3)["error"]
    assert as_json["code"] == "unreachable" and "kiosk lease" in as_json["message"]


async def test_a_payment_prints_its_provisional_receipt_and_a_second_is_refused(server_process: ServerProcess,
                                                                                tmp_path: Path):
    server_process.start()
    journal = tmp_path / "journal.sqlite"
    kiosk_here = in_process(server_process, await cashier_key(server_process, "S01-C1"), journal)
    slip = tmp_path / "receipts.txt"
    issued = await kiosk_here("issue")
    await kiosk_here("next")
    await kiosk_here("start")
    paid = await kiosk_here("pay", "--account", ACCOUNT, "--amount", "1234.50", "--slip", str(slip),
                            "--slip-format", "text")
    printed = slip.read_text()
    for line in ("PROVISIONAL RECEIPT", paid["receipt"], "Rs 1,234.50 cash", "Account ending 2345",
                 f"Token {issued['number']}", f"At {load_scenario(server_process.config).counters['S01-C1'].label}"):
        assert line in printed, (line, printed)
    assert ACCOUNT not in printed                                  # only the last digits
    taken_at = datetime.fromisoformat(paid["created_at"]).strftime("%d %b %Y %H:%M")
    assert f"Taken {taken_at}" in printed
    again = await kiosk_here("pay", "--account", ACCOUNT, "--amount", "1234.50", rc=1)
    assert again["error"]["code"] == "already_paid" and paid["receipt"] in again["error"]["message"]
    part = await kiosk_here("pay", "--account", "2140099999", "--amount", "10", "--part", rc=1)
    assert part["error"]["code"] == "already_paid"                 # parts never beside a whole payment

    await kiosk_here("complete")
    second = await kiosk_here("issue")
    late = tmp_path / "late.txt"                                   # finished first, paid just after
    await kiosk_here("next")
    await kiosk_here("start")
    await kiosk_here("complete")
    after = await kiosk_here("pay", "--token", second["id"], "--account", "2140088888", "--paise", "700",
                             "--slip", str(late), "--slip-format", "text")
    assert after["status"] == "queued" and f"Token {second['number']}" in late.read_text()
    second = await kiosk_here("issue")
    await kiosk_here("next")
    await kiosk_here("start")
    server_process.stop()                                          # offline: cash waits in the journal
    roll = tmp_path / "roll.bin"
    offline = await kiosk_here("pay", "--account", "2140077777", "--paise", "500", "--slip", str(roll))
    data = roll.read_bytes()
    assert data.startswith(INIT) and data.endswith(CUT)
    for line in (offline["receipt"], "Rs 5.00 cash", "Account ending 7777", f"Token {second['number']}",
                 "Taken offline"):
        assert line.encode() in data, line
    server_process.start()
    report = await kiosk_here("sync")                              # the journal's payment lands
    assert [e["kind"] for e in report["done"]] == ["payment"] and report["failed"] == []


# --- failed payments, the worklist, and the cash-up ----------------------------------------------

#: Accounts the test's billing server refuses for good; the corrected one it posts.
REFUSED = ("9990000001", "9990000002")
CORRECTED = "2140055555"


def paying_counter(scenario: Scenario) -> ScenarioCounter:
    """A counter that takes the scenario's paid service (its names come from the scenario)."""
    service = paid_service(scenario)
    return next(c for s in scenario.substations.values() for c in s.counters if service in c.services)


def refusing_server(tmp_path: Path, scenario_file: Path, billing_url: str) -> ServerProcess:
    return ServerProcess(data_dir=tmp_path / "data", config=scenario_file,
                         extra_args=["--rate-limit", "0", "--billing-url", billing_url])


async def serve_and_pay(kiosk_here: Callable[..., Awaitable[Any]], service: str, account: str, rupees: str,
                        mode: str) -> dict:
    """One consumer from the counter's own keys: issued, called, served, paid, finished."""
    await kiosk_here("issue", "--service", service)
    await kiosk_here("next")
    await kiosk_here("start")
    paid = await kiosk_here("pay", "--account", account, "--amount", rupees, "--mode", mode)
    await kiosk_here("complete")
    return paid


async def until_failed(kiosk_here: Callable[..., Awaitable[Any]], count: int) -> list[dict]:
    """The worklist once the gateway has had billing refuse ``count`` payments."""
    answer = await wait_until_async(lambda: kiosk_here("failed"), done=lambda a: len(a["payments"]) == count,
                                    what=f"{count} failed payments on the worklist", timeout=20, interval=0.3)
    return answer["payments"]


def slip_figures(text: str) -> dict[str, tuple[int | None, int]]:
    """{label: (count, paise)} from the cash-up table's rows, as a person would read them: a
    mode under its total or heading as "Taken Cash", "Refunded UPI", "In the drawer Cash"
    (whose count is None: the drawer's cash is an amount)."""
    found: dict[str, tuple[int | None, int]] = {}
    above = ""
    for line in text.splitlines():
        match = re.match(r"^( *)(\S.*?)(?:\s+(\d+))?\s+Rs ([\d,]+)\.(\d\d)$", line)
        if match:
            indent, label, count, whole, cents = match.groups()
            name = f"{above} {label}" if indent else label
            found[name] = (None if count is None else int(count), int(whole.replace(",", "")) * 100 + int(cents))
        if line and not line[0].isspace():
            above = (match.group(2) if match else line).strip()
    return found


async def test_failed_payments_resubmitted_corrected_or_refunded_and_the_cash_up_slip_through_the_cli(
        tmp_path: Path, scenario_file: Path):
    scenario = load_scenario(scenario_file)
    counter = paying_counter(scenario)
    service = paid_service(scenario)
    hall = scenario.substations[counter.substation]
    async with refusing_billing(*REFUSED) as billing:
        server = refusing_server(tmp_path, scenario_file, billing.url)
        server.start()
        try:
            key = await cashier_key(server, counter.id)
            kiosk_here = in_process(server, key, tmp_path / "journal.sqlite")
            env = kiosk_env(server, key, tmp_path / "journal.sqlite")
            first = await serve_and_pay(kiosk_here, service, REFUSED[0], "250.50", "cash")
            second = await serve_and_pay(kiosk_here, service, REFUSED[1], "75", "cash")
            good = await serve_and_pay(kiosk_here, service, ACCOUNT, "1,200", "cheque")
            failed = await until_failed(kiosk_here, 2)
            assert [p["id"] for p in failed] == [first["id"], second["id"]]        # oldest first
            assert billing.refusals >= 2 and all(p["reason_text"] for p in failed)

            listed = kiosk(env, "failed").stdout
            assert f"2 failed payment(s) at {counter.id}" in listed and counter.label in listed
            for payment, amount, mode in ((first, "Rs 250.50", "cash"), (second, "Rs 75.00", "cash")):
                row = next(line for line in listed.splitlines() if payment["receipt"] in line)
                assert payment["account"] in row and amount in row and mode in row, row
                taken = datetime.fromisoformat(payment["created_at"]).strftime("%d %b %H:%M")
                assert taken in row, row
                reason = listed.splitlines()[listed.splitlines().index(row) + 1].strip()
                assert reason == failed[[p["id"] for p in failed].index(payment["id"])]["reason_text"]
                assert "account" in reason and "resubmit" in reason and "refund" in reason   # in words

            # by receipt, the account corrected: queued again, then posted by billing under it
            again = await kiosk_here("resubmit", first["receipt"].lower(), "--account", CORRECTED)
            assert (again["id"], again["status"], again["account"]) == (first["id"], "queued", CORRECTED)
            posted = await wait_until_async(lambda: _admin(server, f"/api/v1/payments/{first['id']}"),
                                            done=lambda a: a["payment"]["status"] == "posted",
                                            what="the resubmitted payment posted", timeout=20, interval=0.3)
            assert posted["payment"]["billing_ref"] == billing.posted[first["id"]]["billing_ref"]
            assert billing.posted[first["id"]]["account"] == CORRECTED

            # by id, refunded; then neither is on the worklist, and a second go is refused in words
            line = kiosk(env, "refund", second["id"]).stdout
            assert line.startswith(f"Refunded Rs 75.00 cash for {REFUSED[1]}: receipt {second['receipt']}")
            assert "hand the consumer Rs 75.00 back" in line
            assert (await _admin(server, f"/api/v1/payments/{second['id']}"))["payment"]["status"] == "refunded"
            refused = (await kiosk_here("refund", first["id"], rc=1))["error"]
            assert (refused["http_status"], refused["code"], refused["payment_status"]) == (
                409, "payment_not_failed", "posted")
            assert first["receipt"] in refused["message"]
            not_listed = kiosk(env, "resubmit", second["receipt"], rc=1).stderr
            assert second["receipt"] in not_listed and "kiosk failed" in not_listed
            assert "4-24 letters" in kiosk(env, "resubmit", second["id"], "--account", "no way!", rc=1).stderr
            assert (await kiosk_here("failed"))["payments"] == []
            assert kiosk(env, "failed").stdout.strip() == f"No failed payments at {counter.id} ({counter.label})."

            # the cash-up: the terminal's table, the slip, and the server's figures agree and add up
            slip = tmp_path / "cash-up.txt"
            table = kiosk(env, "cashup", "--slip", str(slip), "--slip-format", "text").stdout
            cash = await _admin(server, f"/api/v1/counters/{counter.id}/cash-up")
            cash = cash["cash_up"]
            assert await kiosk_here("cashup", "--date", cash["day"]) == cash
            assert cash["taken"] == {"count": 3, "paise": 25050 + 7500 + 120000}
            assert (cash["posted"], cash["refunded"]) == ({"count": 2, "paise": 25050 + 120000},
                                                          {"count": 1, "paise": 7500})
            assert cash["pending"]["count"] == cash["failed"]["count"] == 0
            assert set(cash["by_mode"]) == {"cash", "cheque"} and good["mode"] == "cheque"
            assert cash["refunded_by_mode"] == {"cash": {"count": 1, "paise": 7500}}
            assert cash["in_drawer"] == {"cash": {"count": 1, "paise": 25050}, "cheque": {"count": 1, "paise": 120000}}
            printed = slip.read_text()
            assert max(len(line) for line in printed.splitlines()) <= 32                # 58 mm paper
            for text in (table, printed):
                figures = slip_figures(text)
                assert figures["Taken"] == (3, cash["taken"]["paise"])
                for name in ("posted", "pending", "failed", "refunded"):
                    assert figures[name.capitalize()] == (cash[name]["count"], cash[name]["paise"]), name
                assert (figures["Taken Cash"], figures["Taken Cheque"]) == ((2, 25050 + 7500), (1, 120000))
                parts = [figures[n] for n in ("Posted", "Pending", "Failed", "Refunded")]
                assert tuple(map(sum, zip(*parts))) == figures["Taken"]
                assert sum(figures[f"Taken {m}"][1] for m in ("Cash", "Cheque")) == figures["Taken"][1]
                assert figures["Refunded Cash"] == figures["Refunded"] == (1, 7500)
                # the drawer: cash taken less cash handed back, and the cheque
                assert (figures["In the drawer Cash"], figures["In the drawer Cheque"]) == ((None, 25050),
                                                                                          (1, 120000))
            assert "taken: they add up." in " ".join(table.split()) and "they add up." in printed
            assert table.splitlines()[0] == f"Cash-up {cash['day']}: {counter.id} ({counter.label}), {hall.name}"
            for line in ("CASH-UP", f"{counter.label} ({counter.id})", hall.name, "Counted by"):
                assert line in printed, (line, printed)

            roll = tmp_path / "roll.bin"                                                 # ESC/POS, 80 mm
            kiosk(env, "--slip", str(roll), "--paper", "80", "cashup")
            data = roll.read_bytes()
            assert data.startswith(INIT) and data.endswith(CUT) and b"-" * 48 + b"\n" in data
            assert b"CASH-UP" in data and max(data) < 0x80
            wide = tmp_path / "cash-up-42.txt"                                          # 42 a line
            kiosk(env, "--paper", "80", "cashup", "--columns", "42", "--slip", str(wide), "--slip-format", "text")
            lines = wide.read_text().splitlines()
            assert max(map(len, lines)) == 42 and "-" * 42 in lines
            assert slip_figures(wide.read_text()) == slip_figures(printed)
            assert "invalid choice: 40" in kiosk(env, "cashup", "--columns", "40", rc=2).stderr
            assert "YYYY-MM-DD" in kiosk(env, "cashup", "--date", "1 Dec", rc=2).stderr

            server.stop()
            away = kiosk(env, "failed", rc=3).stderr
            assert "cannot be reached" in away and "worklist needs the server" in away
        finally:
            server.stop()
