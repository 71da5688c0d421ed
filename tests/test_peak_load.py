"""The peak rehearsal's load shapes and report writer."""

from __future__ import annotations

from loadtests.peak_load import Targets, summarise
from loadtests.shapes import END_OF_MONTH_DAY, end_of_month, stress


def test_end_of_month_day_surges_dips_and_surges_again():
    day = [end_of_month(t, 80, 100) for t in range(0, 80, 10)]   # one sample per "hour"
    assert day == [round(100 * share) for share in END_OF_MONTH_DAY]
    morning, lunch, afternoon = max(day[:4]), day[4], max(day[5:])
    assert lunch < morning / 2 and afternoon > 2 * lunch
    assert end_of_month(80, 80, 100) == 0                          # the run is over
    assert end_of_month(5, 80, 100) == round(100 * (0.55 + 0.35 / 2))  # between the first hours


def test_stress_ramps_to_ten_times_then_holds():
    assert stress(0, 100, 10) == 10
    assert stress(40, 100, 10) == 55
    assert stress(80, 100, 10) == stress(99, 100, 10) == 100
    assert stress(100, 100, 10) == 0


def row(kind, name, count, failures, p50, p99):
    return {"Type": kind, "Name": name, "Request Count": str(count), "Failure Count": str(failures),
            "50%": str(p50), "99%": str(p99)}


def test_summary_passes_and_fails_against_the_targets():
    stats = [row("POST", "/payments", 100, 0, 5, 40), row("WS", "delta lateness", 50, 0, 6, 900),
             row("", "Aggregated", 150, 0, 5, 60)]
    billing = {"crashes": 0, "payments_posted": 100, "duplicate_payments": 0, "max_in_flight": 4, "capacity": 8}
    text, passed = summarise(stats, billing, {"queued": 0, "failed": 0}, Targets(), "end-of-month", 60)
    assert passed and "**PASS**" in text and "| POST /payments | 100 | 0 | 5 | 40 |" in text
    _, passed = summarise(stats, {**billing, "crashes": 1}, {"queued": 0, "failed": 0}, Targets(), "stress", 60)
    assert not passed
    text, passed = summarise(stats, billing, {"queued": 3, "failed": 0}, Targets(), "stress", 60)
    assert not passed and "| payments lost (not posted after draining) | 3 | = 0 | FAIL |" in text
    slow = [row("POST", "/payments", 100, 0, 5, 800), row("", "Aggregated", 100, 0, 5, 800)]
    assert not summarise(slow, billing, {"queued": 0, "failed": 0}, Targets(), "stress", 60)[1]
