"""reports/reliability.md's pinned-overload summary (from reports/overload.json) names every goal a phase
misses and says "all PASS" only when none is missed: a check that cannot fail is no check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from benchmarks.reliability.report import overload_goals, pinned_overload, write


def _phase(**changes: Any) -> dict[str, Any]:
    phase = {"overload": {"offered_rps": 1391.2, "duration_s": 60.0, "sent": 1000, "unanswered": 0,
                          "codes": {"OK": 400, "RESOURCE_EXHAUSTED": 600}, "ok_rps": 500.0, "ok_p50_ms": 20.0,
                          "ok_p99_ms": 41.0, "ok_p99_from_send_ms": 40.0, "rejected_p99_ms": 7.0,
                          "rejected_p99_from_send_ms": 6.0, "send_lag_p99_ms": 1.0},
             "recovery": {"duration_s": 10.0, "sent": 200},
             "throughput_vs_sustainable": 1.1, "first_ok_after_overload_s": 0.05, "recovery_ok_share": 1.0,
             "recovery_refusals_at_s": [], "recovery_p99_ms": 6.0, "factor": 3.0, "sustainable_rps": 463.8,
             "slo_ms": 100.0}
    for key, value in changes.items():
        target = phase["overload"] if key in phase["overload"] or key == "refused_without_pushback" else phase
        target[key] = value
    return phase


ARGS = {"server_core": 1, "client_core": 0, "slo_ms": 100.0, "queue_time_ms": 50.0, "concurrent_rpcs": 16,
        "sync_threads": 8}


def test_a_phase_inside_every_goal_passes_and_each_miss_is_named() -> None:
    assert all(overload_goals(_phase()).values())
    assert not overload_goals(_phase(ok_p99_from_send_ms=1357.0))["accepted p99 <= SLO"]
    assert not overload_goals(_phase(throughput_vs_sustainable=0.88))["goodput >= 90%"]
    assert not overload_goals(_phase(unanswered=3))["every request answered"]
    assert not overload_goals(_phase(first_ok_after_overload_s=None))["recovery"]
    assert "every refusal with pushback" not in overload_goals(_phase())  # runs from before it was recorded
    assert overload_goals(_phase(refused_without_pushback=0))["every refusal with pushback"]
    assert not overload_goals(_phase(refused_without_pushback=1))["every refusal with pushback"]
    lines = pinned_overload({"args": ARGS, "sweep": {"sustainable_rps": 463.8}, "x3": _phase(),
                             "sync_x10": _phase(throughput_vs_sustainable=0.88, ok_p99_from_send_ms=150.0)})
    rows = [line for line in lines if line.startswith("| grpc.aio") or line.startswith("| synchronous")]
    assert len(rows) == 2 and rows[0].endswith("none: all PASS |")
    assert "accepted p99 <= SLO, goodput >= 90%" in rows[1] and "88%" in rows[1]


def test_the_report_takes_the_pinned_run_from_overload_json(tmp_path: Path) -> None:
    (tmp_path / "overload.json").write_text(json.dumps(
        {"args": ARGS, "sweep": {"sustainable_rps": 463.8}, "x10": copy.deepcopy(_phase(factor=10.0))}))
    write(tmp_path / "reliability.md")  # no reliability.json: the sections only
    text = (tmp_path / "reliability.md").read_text()
    assert "## Overload inside the SLO: suite and client pinned apart" in text
    assert ("| grpc.aio (default; grpcio's refusal, no pushback), 10x | 1391.2 | 40.0 | 6.0 | not recorded | 110% "
            "| 0.05 s | none: all PASS |") in text
