"""The peak rehearsal's load shapes and report writer."""

from __future__ import annotations

import tomllib

import pytest

from counter_server.config import load_scenario, parse_scenario
from loadtests.peak_load import Targets, estimate_coverage, rehearsal_scenario, summarise
from loadtests.shapes import END_OF_MONTH_DAY, end_of_month, stress

from testkit.processes import ROOT
from testkit.scenarios import paid_service


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


def test_summary_carries_the_estimate_coverage_line():
    stats = [row("POST", "/payments", 10, 0, 5, 40), row("", "Aggregated", 10, 0, 5, 40)]
    billing = {"crashes": 0, "payments_posted": 10, "duplicate_payments": 0, "max_in_flight": 2, "capacity": 8}
    tokens = [{"issued": 0.0, "p50_s": 2.0, "p90_s": 4.0, "called": 1.0},    # within both
              {"issued": 0.0, "p50_s": 2.0, "p90_s": 4.0, "called": 3.0},    # within the p90
              {"issued": 0.0, "p50_s": 2.0, "p90_s": 4.0, "called": 9.0},    # neither
              {"issued": 0.0, "p50_s": 2.0, "p90_s": 4.0, "called": None},   # waiting past p90: neither
              {"issued": 8.0, "p50_s": 2.0, "p90_s": 4.0, "called": None}]   # not decided yet
    coverage = estimate_coverage(tokens, ended=10.0, grace_s=0.0)
    assert (coverage.tokens, coverage.within_p50, coverage.within_p90) == (4, 1, 2)
    text, _ = summarise(stats, billing, {"queued": 0, "failed": 0}, Targets(), "stress", 60, coverage)
    assert "estimate coverage: p50 25 %, p90 50 %" in text.splitlines()
    # The idle counters' reaction time is granted to a token told "at once" only: a token that
    # waited for a busy counter is called the moment that counter completes.
    now = {"issued": 0.0, "p50_s": 0.0, "p90_s": 0.0, "called": 0.15}
    waited = {"issued": 0.0, "p50_s": 2.0, "p90_s": 4.0, "called": 2.15}
    coverage = estimate_coverage([now, waited], ended=10.0, grace_s=0.2)
    assert (coverage.tokens, coverage.within_p50, coverage.within_p90) == (2, 1, 2)


def test_the_rehearsal_runs_the_scenario_open_all_day_with_scaled_service_times(scenario_file):
    """peak-load takes names from the scenario: counters, halls, services and the paid one."""
    original = load_scenario(scenario_file)
    rehearsal = parse_scenario(tomllib.loads(rehearsal_scenario(scenario_file, 0.01)))
    assert rehearsal.payment_service == paid_service(original)
    assert list(rehearsal.counters) == list(original.counters)
    for sid, service in original.services.items():
        assert rehearsal.services[sid].mean_service_s == pytest.approx(service.mean_service_s * 0.01)
        assert rehearsal.services[sid].max_service_s == pytest.approx(service.max_service_s * 0.01)
    for sub in rehearsal.substations.values():
        assert (sub.opens.isoformat(), sub.closes.isoformat()) == ("00:00:00", "23:59:59")
    assert rehearsal.substations[next(iter(original.substations))].name == next(iter(original.substations.values())).name


def test_the_load_script_names_nothing_of_the_built_in_scenario():
    source = (ROOT / "loadtests" / "locustfile.py").read_text(encoding="utf-8")
    for name in ("bill_payment", "S01", "new_connection", "complaint"):
        assert name not in source
