"""The load test's verdict (bench/journeys_report.py): a level meets the seed's targets
only with no errors, every read step's p95 under 200 ms, login's p95 under 1 s and every
accepted change ended exactly once in the event store; each miss is named."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

REPORT = REPO / "bench" / "journeys_report.py"


def step(p95, errors=None, requests=100):
    return {"requests": requests, "errors": errors or {}, "per_second": 1.0,
            "p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95, "max_ms": p95}


def level(tmp_path, steps=None, event_store=None):
    steps = steps or {"login": step(400), "menu": step(20), "bill_cold": step(30),
                      "bill_warm": step(10), "completion": step(900)}
    (tmp_path / "journeys.json").write_text(json.dumps({
        "seconds": 60.0, "steps": steps, "timeline": [],
        "changes": {"accepted": 2, "completed": 2, "failed": 0, "unfinished": 0, "not_eligible": 0}}))
    (tmp_path / "bare.json").write_text(json.dumps({"seconds": 10.0, "steps": {"bare": step(5)}}))
    (tmp_path / "processes.csv").write_text("process,cpu_seconds,peak_pss_mib\nquery-service,12,40\n")
    (tmp_path / "samples.csv.lag").write_text("seconds,consumer_lag\n0,40\n60,17\n65,3\n")
    (tmp_path / "changes.json").write_text(json.dumps(event_store or {
        "accepted": 2, "ended_once": 2, "ended_twice_or_more": 0, "not_ended": 0}))
    (tmp_path / "cache.before").write_text("l1:hit=10\nl1:miss=10\n")
    (tmp_path / "cache.after").write_text("l1:hit=100\nl1:miss=20\n")
    run = subprocess.run([sys.executable, str(REPORT), str(tmp_path), "1000", "60"],
                         capture_output=True, text=True, check=True)
    return json.loads((tmp_path / "summary.json").read_text()), run.stdout


def test_a_clean_level_meets_the_targets_and_says_what_it_measured(tmp_path):
    summary, table = level(tmp_path)
    assert summary["targets_met"] and summary["reads_hold"], summary["misses"]
    assert (summary["consumer_lag_peak"], summary["consumer_lag_peak_after_1_min"]) == (40, 17)
    assert summary["cache"]["l1"] == {"hits": 90, "lookups": 100, "hit_ratio": 0.9}
    assert summary["read_p95_over_bare_p95"] == 6.0  # bill_cold 30 ms over bare 5 ms
    assert "targets met" in table


def test_an_error_a_slow_read_or_a_slow_login_misses_the_targets(tmp_path):
    steps = {"login": step(1200), "menu": step(250), "bill_warm": step(10, {"429 RATE_LIMITED": 1})}
    summary, table = level(tmp_path, steps=steps)
    assert not summary["targets_met"] and not summary["reads_hold"]
    assert summary["misses"] == ["1 errors", "menu p95 250 ms", "login p95 1200 ms"]
    assert "targets missed" in table


def test_a_slow_write_misses_the_peak_targets_while_the_reads_still_hold(tmp_path):
    steps = {"login": step(400), "menu": step(20), "change": step(230), "logout": step(900),
             "completion": step(1500)}
    summary, _ = level(tmp_path, steps=steps)
    assert summary["misses"] == ["change p95 230 ms", "logout p95 900 ms"]
    assert summary["reads_hold"]


def test_a_change_lost_or_ended_twice_misses_the_targets(tmp_path):
    for store in ({"accepted": 2, "ended_once": 1, "ended_twice_or_more": 0, "not_ended": 1},
                  {"accepted": 2, "ended_once": 1, "ended_twice_or_more": 1, "not_ended": 0}):
        summary, _ = level(tmp_path, event_store=store)
        assert not summary["targets_met"]
        assert summary["misses"][0].startswith("changes not ended exactly once")
