"""Daily and monthly reports: the arithmetic on a hand-built day with known answers (no I/O),
then the same figures through a real server, its store and the CLI."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from counter_server.ops.reports import (
    counter_of_actor,
    daily_csv,
    daily_json,
    daily_report,
    daily_text,
    monthly_report,
    percentile,
)

from testkit.api import Api, Clock, bearer
from testkit.processes import ServerProcess, run_cli

IST = ZoneInfo("Asia/Kolkata")
DAY = "2025-11-25"
LAYOUT = {"S01": ["S01-C1", "S01-C2"], "S02": ["S02-C1"]}


def at(hhmm: str, day: str = DAY) -> float:
    return datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=IST).timestamp()


class Day:
    """Builds events as the store returns them (``Store.day_events``), one token at a time."""

    def __init__(self, day: str = DAY) -> None:
        self.day = day
        self.events: list[dict] = []
        self.tokens: dict[str, dict] = {}
        self.seq = 0

    def add(self, kind: str, when: str, substation: str, *, token: str | None = None,
             counter: str | None = None, actor: str = "admin:k0", data: dict | None = None) -> None:
        self.seq += 1
        self.events.append({"seq": self.seq, "at": at(when, self.day), "substation": substation,
                            "day": self.day, "token_id": token, "kind": kind, "actor": actor,
                            "counter": counter, "data": data or {}})

    def issue(self, tid: str, when: str, substation: str = "S01", by: str | None = None) -> None:
        self.tokens[tid] = {"id": tid, "substation": substation, "day": self.day, "service": "bill_payment",
                            "number": f"B-{len(self.tokens) + 1:03d}", "status": "waiting",
                            "issued_at": at(when, self.day), "counter": None, "called_at": None,
                            "started_at": None, "finished_at": None}
        actor = f"cashier@{by}:k1" if by else "admin:k0"
        self.add("issued", when, substation, token=tid, actor=actor, data=dict(self.tokens[tid]))

    def move(self, tid: str, kind: str, when: str, by: str | None, **changes: object) -> None:
        """An event ``by`` a counter (None: not at a counter) that changes the token."""
        token = self.tokens[tid]
        token.update(changes)
        self.add(kind, when, token["substation"], token=tid, counter=by, data=dict(token))

    def call(self, tid: str, when: str, counter: str) -> None:
        self.move(tid, "called", when, counter, status="called", counter=counter, called_at=at(when, self.day))

    def serve(self, tid: str, start: str, done: str) -> None:
        counter = self.tokens[tid]["counter"]
        self.move(tid, "started", start, counter, status="serving", started_at=at(start, self.day))
        self.move(tid, "completed", done, counter, status="done", finished_at=at(done, self.day))

    def turned_away(self, when: str, reason: str, substation: str = "S01") -> None:
        self.events.append({"seq": None, "at": at(when, self.day), "substation": substation,
                            "day": self.day, "token_id": None, "kind": "turned_away", "actor": None,
                            "counter": None, "data": {"service": "bill_payment", "reason": reason}})

    def payment(self, pid: str, tid: str, counter: str, paise: int, when: str, outcome: str | None) -> None:
        row = {"id": pid, "token_id": tid, "substation": self.tokens[tid]["substation"], "counter": counter,
               "account": "2140012345", "amount_paise": paise, "mode": "cash", "status": "queued",
               "day": self.day}
        self.add("payment_queued", when, row["substation"], token=tid, counter=counter, data=dict(row))
        if outcome is not None:
            self.add(f"payment_{outcome}", when, row["substation"], token=tid, counter=counter,
                      data={**row, "status": outcome})


def hand_built_day() -> Day:
    d = Day()
    d.issue("T1", "10:00", by="S01-C1")
    d.issue("T2", "10:10", by="S01-C1")
    d.issue("T3", "10:15")
    d.issue("T4", "10:30", by="S01-C2")
    d.issue("T7", "10:00", substation="S02", by="S02-C1")
    d.call("T1", "10:05", "S01-C1")                       # waits 5 min
    d.serve("T1", "10:06", "10:08")                       # at the counter 3 min
    d.call("T2", "10:20", "S01-C2")                       # waits 10 min
    d.serve("T2", "10:21", "10:25")                       # 5 min
    d.call("T7", "10:01", "S02-C1")                       # waits 1 min
    d.serve("T7", "10:01", "10:03")                       # 2 min
    d.move("T4", "cancelled", "10:35", None, status="cancelled", finished_at=at("10:35"))
    d.call("T3", "10:55", "S01-C1")                       # waits 40 min
    d.move("T3", "recalled", "10:57", "S01-C1")
    d.move("T3", "no_show", "10:58", "S01-C1", status="no_show", finished_at=at("10:58"))
    d.issue("T5", "11:00")
    d.issue("T6", "11:10")                                # still waiting at the end
    d.call("T5", "11:25", "S01-C2")                       # waits 25 min (first call)
    d.move("T5", "no_show", "11:27", "S01-C2", status="no_show", finished_at=at("11:27"))
    d.move("T5", "requeued", "11:50", "S01-C2", status="waiting", counter=None, called_at=None,
           finished_at=None)
    d.call("T5", "11:55", "S01-C1")
    d.serve("T5", "11:56", "12:00")                       # 5 min from the last call
    d.turned_away("11:20", "after_closing")
    d.turned_away("11:30", "daily_cap")
    d.payment("P1", "T1", "S01-C1", 10_000, "10:08", "posted")
    d.payment("P2", "T2", "S01-C2", 25_050, "10:25", "failed")
    d.payment("P3", "T5", "S01-C1", 5_000, "12:00", None)
    d.events.sort(key=lambda e: e["at"])                  # the store merges by time
    return d


def rows_of(report) -> dict[tuple[str, str | None], object]:
    return {(r.substation, r.counter): r for r in report.rows}


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([300, 600, 1500, 2400], 0.5) == 600
    assert percentile([300, 600, 1500, 2400], 0.9) == 2400
    assert percentile([5], 0.9) == 5
    assert percentile(list(range(1, 11)), 0.9) == 9


def test_counter_of_actor():
    assert counter_of_actor("cashier@S01-C1:k12ab") == "S01-C1"
    assert counter_of_actor("admin:k0") is None
    assert counter_of_actor(None) is None


def test_substation_figures_of_a_hand_built_day():
    report = daily_report(DAY, hand_built_day().events, IST, layout=LAYOUT)
    s01 = rows_of(report)[("S01", None)]
    assert (s01.issued, s01.served, s01.no_shows, s01.cancelled, s01.open_at_end, s01.turned_away) == \
        (6, 3, 1, 1, 1, 2)
    # waits of every called token: T1 300, T2 600, T3 2400, T5 1500 (to its first call)
    assert (s01.wait_p50_s, s01.wait_p90_s, s01.wait_max_s) == (600.0, 2400.0, 2400.0)
    # counter time, last call to done: T1 180, T2 300, T5 300
    assert (s01.service_p50_s, s01.service_p90_s) == (300.0, 300.0)
    # served T1 (5 min), T2 (10 min), T5 (25 min)
    assert s01.served_within_15_min == pytest.approx(2 / 3, abs=1e-4)
    assert s01.served_within_30_min == 1.0
    assert (s01.busiest_hour, s01.busiest_hour_count) == ("10:00", 4)
    assert (s01.payments_taken, s01.payments_taken_paise) == (3, 40_050)
    assert (s01.payments_posted, s01.payments_posted_paise) == (1, 10_000)
    assert (s01.payments_failed, s01.payments_failed_paise) == (1, 25_050)
    assert report.turned_away_reasons == {"after_closing": 1, "daily_cap": 1}


def test_counter_figures_of_a_hand_built_day():
    rows = rows_of(daily_report(DAY, hand_built_day().events, IST, layout=LAYOUT))
    c1, c2 = rows[("S01", "S01-C1")], rows[("S01", "S01-C2")]
    # C1 issued T1, T2; first called T1 (5 min) and T3 (40 min); served T1 and T5; T3 no-show
    assert (c1.issued, c1.served, c1.no_shows, c1.cancelled) == (2, 2, 1, 0)
    assert (c1.wait_p50_s, c1.wait_p90_s, c1.wait_max_s) == (300.0, 2400.0, 2400.0)
    assert (c1.service_p50_s, c1.service_p90_s) == (180.0, 300.0)
    assert (c1.served_within_15_min, c1.served_within_30_min) == (0.5, 1.0)
    assert c1.busiest_hour == "10:00" and c1.busiest_hour_count == 1   # tie 10:00 / 12:00: the earlier
    assert (c1.payments_taken, c1.payments_taken_paise, c1.payments_posted) == (2, 15_000, 1)
    assert c1.turned_away is None and c1.open_at_end is None           # door figures are the hall's
    # C2 issued T4 (cancelled while waiting: no counter's); first called T2 and T5; served T2;
    # T5's no-show at C2 does not count: T5 came back and was served
    assert (c2.issued, c2.served, c2.no_shows, c2.cancelled) == (1, 1, 0, 0)
    assert (c2.wait_p50_s, c2.wait_p90_s) == (600.0, 1500.0)
    assert (c2.payments_failed, c2.payments_failed_paise) == (1, 25_050)
    s02 = rows[("S02", "S02-C1")]
    assert (s02.issued, s02.served, s02.wait_p50_s, s02.service_p50_s) == (1, 1, 60.0, 120.0)


def test_total_hours_and_idle_counters():
    report = daily_report(DAY, hand_built_day().events, IST, layout={**LAYOUT, "S03": ["S03-C1"]})
    total = report.total
    assert (total.substation, total.issued, total.served, total.turned_away) == ("ALL", 7, 4, 2)
    assert (total.wait_p50_s, total.wait_p90_s) == (600.0, 2400.0)   # of 60, 300, 600, 1500, 2400
    hours = {h.hour: h for h in report.hours}
    assert (hours[10].issued, hours[10].called, hours[10].wait_p50_s, hours[10].wait_p90_s) == (5, 4, 300.0, 2400.0)
    assert (hours[11].issued, hours[11].called, hours[11].turned_away, hours[11].wait_p50_s) == (2, 1, 2, 1500.0)
    idle = rows_of(report)[("S03", "S03-C1")]
    assert (idle.issued, idle.served, idle.wait_p50_s, idle.busiest_hour) == (0, 0, None, None)
    only = daily_report(DAY, [e for e in hand_built_day().events if e["substation"] == "S02"], IST,
                        layout={"S02": LAYOUT["S02"]}, substation="S02")
    assert [(r.substation, r.counter) for r in only.rows] == [("S02", None), ("S02", "S02-C1")]
    assert only.total.substation == "S02" and only.total.issued == 1


def test_csv_and_json_carry_the_same_figures():
    report = daily_report(DAY, hand_built_day().events, IST, layout=LAYOUT)
    lines = list(csv.DictReader(io.StringIO(daily_csv(report))))
    assert [(r["substation"], r["counter"]) for r in lines] == [
        ("S01", ""), ("S01", "S01-C1"), ("S01", "S01-C2"), ("S02", ""), ("S02", "S02-C1"), ("ALL", "")]
    assert lines[0]["day"] == DAY and lines[0]["wait_p90_s"] == "2400.0" and lines[0]["turned_away"] == "2"
    body = daily_json(report)
    assert body["rows"][0]["served_within_15_min"] == pytest.approx(0.6667)
    assert body["total"]["payments_taken_paise"] == 40_050
    assert "S01-C1" in daily_text(report)


def test_a_month_pools_its_tokens_rather_than_averaging_days():
    first = hand_built_day()
    second = Day("2025-11-26")
    for i, minutes in enumerate([1, 2, 3, 4]):
        tid = f"U{i}"
        second.issue(tid, "09:30", by="S01-C1")
        second.call(tid, f"09:{30 + minutes:02d}", "S01-C1")
        second.serve(tid, f"09:{30 + minutes:02d}", f"09:{40 + minutes:02d}")
    month = monthly_report("2025-11", [(DAY, first.events), ("2025-11-26", second.events),
                                       ("2025-11-27", [])], IST)
    assert [day for day, _ in month.days] == [DAY, "2025-11-26"]
    assert month.days[1][1].wait_p90_s == 240.0
    total = month.total
    assert (total.issued, total.served, total.turned_away) == (11, 8, 2)
    # pooled waits 60,60,120,180,240,300,600,1500,2400: p90 is the 9th (2400), not a mean of p90s
    assert (total.wait_p50_s, total.wait_p90_s) == (240.0, 2400.0)


# -- through the real server --------------------------------------------------------------------

async def test_daily_report_through_the_server(api: Api, clock: Clock):
    cashier = await api.cashier("S01-C1")
    first = await api.issue(key=cashier)
    second = await api.issue()
    clock.now += 300
    called = await api.next("S01-C1")
    assert called["id"] == first["id"]
    await api.act(called, "start")
    clock.now += 120
    status, _ = await api.act(called, "complete")
    assert status == 200
    status, _ = await api.post("/api/v1/payments", cashier, json={
        "token_id": first["id"], "account": "2140012345", "amount_paise": 123_450, "mode": "cash"})
    assert status == 202
    clock.now += 600
    again = await api.next("S01-C1")
    assert again["id"] == second["id"]
    await api.act(again, "recall")
    await api.act(again, "no-show")
    status, admission = await api.request("PUT", "/api/v1/ops/substations/S01/admission", api.admin,
                                          json={"admission": True, "daily_cap": 2})
    assert status == 200
    status, body = await api.post("/api/v1/substations/S01/tokens", json={"service": "bill_payment"})
    assert status == 409 and body["error"]["code"] == "cannot_serve_today"

    day = datetime.fromtimestamp(clock.now, IST).date().isoformat()
    status, body = await api.get(f"/api/v1/reports/daily?date={day}&substation=S01")
    assert status == 200, body
    report = body["report"]
    s01 = report["rows"][0]
    assert (s01["substation"], s01["counter"]) == ("S01", None)
    assert (s01["issued"], s01["served"], s01["no_shows"], s01["turned_away"]) == (2, 1, 1, 1)
    assert (s01["wait_p50_s"], s01["wait_max_s"]) == (300.0, 1020.0)
    assert s01["service_p50_s"] == 120.0 and s01["served_within_15_min"] == 1.0
    assert (s01["payments_taken"], s01["payments_taken_paise"]) == (1, 123_450)
    c1 = next(r for r in report["rows"] if r["counter"] == "S01-C1")
    assert (c1["issued"], c1["served"], c1["no_shows"]) == (1, 1, 1)
    assert report["turned_away_reasons"] == {"daily_cap": 1}

    async with api.client.get(f"/api/v1/reports/daily?date={day}&substation=S01&format=csv",
                              headers=bearer(api.admin)) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        lines = list(csv.DictReader(io.StringIO(await resp.text())))
    assert lines[0]["served"] == "1" and lines[-1]["substation"] == "S01"

    status, body = await api.get(f"/api/v1/reports/monthly?month={day[:7]}", api.board)
    assert status == 200 and body["report"]["days"][-1]["day"] == day
    assert body["report"]["total"]["issued"] == 2


@pytest.mark.parametrize("query, code, field", [
    ("date=2025-13-01", "invalid_field", "date"),
    ("date=yesterday", "invalid_field", "date"),
    ("substation=S99", "substation_not_found", None),
    ("format=xml", "invalid_field", "format"),
])
async def test_bad_report_requests_name_the_problem(api: Api, query: str, code: str, field: str | None):
    status, body = await api.get(f"/api/v1/reports/daily?{query}")
    assert status in (404, 422) and body["error"]["code"] == code
    if field:
        assert body["error"]["field"] == field


async def test_reports_are_for_admin_and_board_keys(api: Api):
    status, body = await api.get("/api/v1/reports/daily", await api.cashier("S01-C1"))
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await api.request("GET", "/api/v1/reports/monthly?month=2025-1")
    assert status == 401


def test_report_command_prints_a_day_and_writes_a_month_and_a_chart(server_process: ServerProcess,
                                                                     tmp_path: Path):
    import urllib.request

    server_process.start()
    headers = {**bearer(server_process.admin_key), "Content-Type": "application/json"}

    def post(path: str, body: bytes = b"") -> dict:
        req = urllib.request.Request(server_process.url + path, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            import json
            return json.loads(resp.read())

    for _ in range(3):
        post("/api/v1/substations/S02/tokens", b'{"service": "bill_payment"}')
    token = post("/api/v1/counters/S02-C1/next")["token"]
    post(f"/api/v1/tokens/{token['id']}/start")
    post(f"/api/v1/tokens/{token['id']}/complete")
    day = token["day"]
    server_process.stop()                                  # the command reads the data dir itself

    data = str(server_process.data_dir)
    done = run_cli("report", "--data-dir", data, "--date", day, "--substation", "S02")
    assert f"Daily report {day}, S02" in done.stdout
    assert "S02-C1" in done.stdout
    csv_out = run_cli("report", "--data-dir", data, "--date", day, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(csv_out)))
    s02 = next(r for r in rows if r["substation"] == "S02" and not r["counter"])
    assert (s02["issued"], s02["served"], s02["open_at_end"]) == ("3", "1", "2")
    month = run_cli("report", "--data-dir", data, "--month", day[:7])
    assert f"Monthly report {day[:7]}" in month.stdout and day in month.stdout
    chart = tmp_path / "waits.png"
    run_cli("report", "--data-dir", data, "--date", day, "--chart", str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5_000
    bad = run_cli("report", "--data-dir", data, "--date", "2025-02-30", check=False)
    assert bad.returncode == 2 and "date must be YYYY-MM-DD" in bad.stderr


def test_tokens_the_day_closed_are_counted_as_closed_unserved_not_open_or_served():
    d = Day()
    d.issue("W1", "16:00", by="S01-C1")
    d.issue("W2", "16:10")
    d.issue("S1", "16:20")
    d.call("W1", "17:20", "S01-C1")                       # called, never started
    d.call("S1", "17:25", "S01-C2")
    d.move("S1", "started", "17:26", "S01-C2", status="serving", started_at=at("17:26"))
    d.add("booked", "12:00", "S01", token="B1", data={"id": "B1", "number": "", "status": "booked"})
    for tid, counter in (("B1", None), ("W2", None), ("W1", "S01-C1")):
        d.add("closed_unserved", "17:30", "S01", token=tid, counter=counter, actor="day-close",
               data={"id": tid, "number": d.tokens.get(tid, {}).get("number", ""),
                     "status": "closed_unserved"})
    d.move("S1", "completed_at_close", "23:59", "S01-C2", status="done", finished_at=at("23:59"))
    report = daily_report(DAY, d.events, IST, layout=LAYOUT)
    s01 = report.rows[0]
    # The booking never started: not issued, yet a consumer the day did not serve.
    assert (s01.issued, s01.served, s01.closed_unserved, s01.open_at_end) == (3, 1, 3, 0)
    assert s01.service_p50_s is None                      # nobody timed the end of that service
    c1 = next(r for r in report.rows if r.counter == "S01-C1")
    c2 = next(r for r in report.rows if r.counter == "S01-C2")
    assert (c1.closed_unserved, c2.closed_unserved, c2.served) == (1, 0, 1)
    lines = list(csv.DictReader(io.StringIO(daily_csv(report))))
    assert lines[0]["closed_unserved"] == "3" and lines[-1]["closed_unserved"] == "3"
    text = daily_text(report)
    header, first = text.splitlines()[2], text.splitlines()[3]
    assert "closed" in header.split() and first.split()[:6] == ["S01", "3", "1", "0", "0", "3"]
    assert "closed_unserved" in daily_json(report)["definitions"]
    month = monthly_report("2025-11", [(DAY, d.events)], IST)
    assert month.total.closed_unserved == 3


def text_rows(text: str) -> dict[str, dict[str, str]]:
    """The text report's table as {row name: {column: cell}}, read by the header's columns."""
    lines = text.split("\n\n")[1].splitlines()
    header = lines[0]
    starts = [0] + [i + 2 for i in range(len(header) - 1) if header[i:i + 2] == "  " and header[i + 2] != " "]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
    rows = {}
    for line in lines[1:]:
        name, *cells = line.split()
        rows[name] = dict(zip(names[1:], cells))
    return rows


def test_the_text_report_says_what_is_open_at_the_end_so_the_columns_add_up():
    """issued != served + no-show with nothing to say why: the missing tokens were still open
    (or closed by the day). The text report now has an 'open' column and a key saying so."""
    report = daily_report(DAY, hand_built_day().events, IST, layout=LAYOUT)
    text = daily_text(report)
    rows = text_rows(text)
    for name in ("S01", "S02", "total"):
        row = rows[name]
        ended = sum(int(row[c]) for c in ("served", "no-show", "cancel", "closed", "open"))
        assert int(row["issued"]) == ended, (name, row)
    assert rows["S01"]["open"] == "1" and rows["total"]["open"] == "1"          # T6, still waiting
    assert "issued = served + no-show + cancel + closed + open" in text
    assert "open: still waiting, called or\nbeing served at the end" in text
    lines = list(csv.DictReader(io.StringIO(daily_csv(report))))
    assert lines[0]["open_at_end"] == "1"


def test_payments_are_called_taken_in_the_text_the_csv_and_the_json():
    report = daily_report(DAY, hand_built_day().events, IST, layout=LAYOUT)
    header = daily_csv(report).splitlines()[0].split(",")
    assert [c for c in header if c.startswith("payments_")] == [
        "payments_taken", "payments_taken_paise", "payments_posted", "payments_posted_paise",
        "payments_pending", "payments_pending_paise", "payments_failed", "payments_failed_paise",
        "payments_refunded", "payments_refunded_paise"]
    assert "queued" not in ",".join(header)
    assert "payments (Rs) taken/posted/pending/failed/refunded" in daily_text(report)
    body = daily_json(report)
    assert body["total"]["payments_taken"] == 3 and "taken" in body["definitions"]["payments"]
    assert not any("queued" in key for key in body["total"])


def one_token_day() -> Day:
    """One token at 10:00, called 6 minutes later: its hour's p50 and p90 are the same."""
    d = Day()
    d.issue("T1", "10:00", by="S01-C1")
    d.call("T1", "10:06", "S01-C1")
    d.serve("T1", "10:07", "10:09")
    return d


def test_the_chart_centres_each_hours_bar_on_its_tick_and_shows_p50_beside_an_equal_p90(tmp_path: Path):
    """Read the PNG's pixels where a person looks: either side of the hour's tick (the lone bar
    sat to its left), and at the hour's wait (the p90 square covered the p50 dot)."""
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib import colors
    from matplotlib.image import imread

    from counter_server.ops.chart import ISSUED, P50, P90, draw_daily

    report = daily_report(DAY, one_token_day().events, IST, layout=LAYOUT)
    (hour,) = report.hours
    assert hour.wait_p50_s == hour.wait_p90_s == 360.0
    fig, counts, waits = draw_daily(plt, report)
    png = tmp_path / "day.png"
    fig.canvas.draw()

    def pixel_at(axes, x: float, y: float) -> tuple[float, float, float]:
        px, py = axes.transData.transform((x, y))
        image = pixel_at.image
        return tuple(image[image.shape[0] - 1 - round(py), round(px), :3])

    fig.savefig(png)
    pixel_at.image = imread(png)
    plt.close(fig)

    def near(rgb, colour: str) -> bool:
        """The chart's colour nearest to the pixel (antialiasing blends edges) is ``colour``."""
        palette = (ISSUED, P50, P90, "#ffffff")
        return min(palette, key=lambda c: sum((a - b) ** 2 for a, b in zip(rgb, colors.to_rgb(c)))) == colour

    for dx in (-0.2, 0.2):                                 # the bar covers both sides of 10:00
        assert near(pixel_at(counts, 10 + dx, 0.3), ISSUED), dx
    assert list(counts.get_xticks()) == [10]
    assert near(pixel_at(waits, 10, 6.0), P50)             # the p50 dot, drawn over p90's square
    square_edge = waits.transData.inverted().transform(
        waits.transData.transform((10, 6.0)) + (0, 6.5))   # 6.5 px up: on the hollow square's edge
    assert near(pixel_at(waits, *square_edge), P90)


def test_the_month_chart_centres_its_bars_too(tmp_path: Path):
    plt = pytest.importorskip("matplotlib.pyplot")
    from counter_server.ops.chart import draw_monthly

    month = monthly_report("2025-11", [(DAY, hand_built_day().events)], IST)
    fig, counts, _ = draw_monthly(plt, month)
    bars = [p for p in counts.patches if p.get_height() > 0]
    assert bars and all(abs(p.get_x() + p.get_width() / 2 - 0) < 1e-9 for p in bars)   # on day 25's tick
    plt.close(fig)
