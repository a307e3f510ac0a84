"""reports/reliability.md's supervision sections say FAIL when the figures miss a criterion (a check
that cannot fail is no check): a server that went down, health that flickered, a crash loop that
did not end the server."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks.reliability.report import _supervision


def _machine(foreign: float = 0.001) -> dict[str, Any]:
    return {"cores": [{"cores": [0, 1], "role": "shared", "busy_share": 0.6, "own_share_of_busy": 0.99,
                       "foreign_share": foreign, "kernel_share": 0.05, "steal_share": 0.0}],
            "pinned": False, "seconds": 10.0, "load_average": [1.0, 0.8, 0.7], "offenders": []}


def _kill(wait: bool, **changes: Any) -> dict[str, Any]:
    return {"wait_for_ready": wait, "connections": 16, "sent": 100, "codes": {"OK": 99, "UNAVAILABLE": 1},
            "failed_window_s": [0.01, 0.01], "ok_p99_ms": {"before_kill": 5.0, "first_2_s_after": 40.0, "later": 6.0},
            "worker_down_seen_s": 0.1, "worker_restarted_s": 1.2, "health_samples": {"SERVING": 50},
            "health_not_serving_after_kill": [], "server_alive_after": True, "machine": _machine(), **changes}


GOOD = {"command": "python -m benchmarks.reliability.supervision --repository shipped_models",
        "load_average_before": [0.1, 0.3, 0.5],
        "args": {"rate": 200.0, "duration_s": 12.0, "kill_at_s": 4.0, "clients": 16, "rounds": 3},
        "worker_kill": [_kill(False), _kill(True)],
        "crash_loop": {"restart_limit": 2, "kills": 3, "restart_s": [1.0, 0.6], "exit_code": 1,
                       "exit_after_last_kill_s": 1.1, "log_line": "crash loop: 3 worker deaths in 60 s",
                       "machine": _machine()},
        "memory_budget": [{"budget_bytes": 0, "request_bytes": 2 * 2**20, "codes": {"OK": 48},
                           "refused_by_budget": 0, "peak_rss_growth_mib": 300.0, "seconds": 3.0,
                           "machine": _machine()},
                          {"budget_bytes": 6 * 2**20, "request_bytes": 2 * 2**20, "codes": {"OK": 8,
                           "RESOURCE_EXHAUSTED": 40}, "refused_by_budget": 40, "peak_rss_growth_mib": 290.0,
                           "seconds": 1.0, "machine": _machine()}]}


def test_good_figures_pass_every_check_and_the_table_shows_them() -> None:
    text = "\n".join(_supervision(GOOD))
    assert "FAIL" not in text and "INVALID" not in text and text.count("- PASS") == 4
    assert ("Machine: load average before the run 0.10, 0.30, 0.50; over the 5 phases the cores were 60%-60% "
            "busy") in text
    assert ("| wait_for_ready | 100 | OK 99, UNAVAILABLE 1 | [0.01, 0.01] | 5.0 / 40.0 / 6.0 | 0.1 / 1.2 | "
            "0 of 50 | yes |") in text
    assert "| 6.0 MiB | OK 8, RESOURCE_EXHAUSTED 40 | 40 | 290.0 | 1.0 |" in text
    assert "changed the peak by -10.0 MiB" in text


def test_a_server_that_went_down_flickering_health_or_no_crash_exit_fail() -> None:
    for path, value in ((("worker_kill", 1, "server_alive_after"), False),
                        (("worker_kill", 0, "health_not_serving_after_kill"), [(0.1, "NOT_SERVING")]),
                        (("worker_kill", 1, "codes"), {"OK": 70, "UNAVAILABLE": 30}),
                        (("crash_loop", "exit_code"), 0)):
        bad = copy.deepcopy(GOOD)
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert "- FAIL" in "\n".join(_supervision(bad)), path


def test_foreign_work_or_no_machine_report_marks_the_sections_invalid() -> None:
    starved = copy.deepcopy(GOOD)
    starved["memory_budget"][1]["machine"] = _machine(foreign=0.2)
    text = "\n".join(_supervision(starved))
    assert text.startswith("> **INVALID: memory budget 6291456: 20.0% foreign")
    unrecorded = {k: v for k, v in GOOD.items() if k != "load_average_before"}
    assert "\n".join(_supervision(unrecorded)).startswith("> **INVALID: no machine report")
