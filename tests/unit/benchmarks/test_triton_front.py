"""make bench-triton-front's arithmetic and report on fake steps: CPU per request (exact, estimated from the
inner window, per core), the round-paired ratios, the rendered tables, and the INVALID stamp. No sockets."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.serving import triton_front, validity
from benchmarks.serving.triton_front import DIRECT, EMBEDDED, FRONT


def machine(busy: float, seconds: float = 10.0, foreign: float = 0.0) -> dict[str, Any]:
    core = {"busy_share": busy, "own_share_of_busy": 1.0, "foreign_share": foreign, "kernel_share": 0.02,
            "steal_share": 0.0}
    return {"seconds": seconds, "pinned": True, "load_average": [1.0, 1.0, 1.0], "offenders": [],
            "cores": [{**core, "cores": [1], "role": "server"}, {**core, "cores": [0], "role": "generator"}]}


def step(server: str, clients: int, completed: int, exact_ms: float, busy: float, inner_cpu: dict[str, float],
         round_: int = 0, triton_requests: int | None = None, api: str = "OIP ModelInfer",
         **extra: Any) -> dict[str, Any]:
    """A recorded step of a 10 s window whose inner window lasted 8 s."""
    return {"kind": "closed", "round": round_, "server": server, "mix": "ranking", "api": api, "clients": clients,
            "completed": completed, "throughput_rps": completed / 10, "errors": 0, "error_codes": {},
            "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "server_cpu_ms_per_request": exact_ms,
            "model_cpu_ms_per_request": 0.0, "other_cpu_ms_per_request": None, "machine": machine(busy),
            "inner_window": {"seconds": 8.0, "cpu_s": inner_cpu, "triton_requests": triton_requests}, **extra}


def three(round_: int = 0, clients: int = 1, front_busy: float = 0.1) -> list[dict[str, Any]]:
    """Triton direct 100 req/s at 0.9 ms; in front 50 req/s, suite 1.0 ms + Triton 0.9 ms; embedded 90 req/s."""
    return [
        step(DIRECT, clients, 1000, 0.9, 0.1, {"triton": 0.72}, round_, triton_requests=800),
        step(FRONT, clients, 500, 1.0, front_busy, {"suite": 0.4, "triton": 0.36}, round_, triton_requests=200),
        step(EMBEDDED, clients, 900, 1.0, 0.09, {"suite": 0.72}, round_, model_cpu_ms_per_request=0.4,
             other_cpu_ms_per_request=0.6),
    ]


def context(clients: list[int]) -> dict[str, Any]:
    return {"command": "make bench-triton-front", "started": "2026-12-07 03:00 UTC", "minutes": 6.0,
            "machine": "x86_64, 2 cores", "server_cores": [1], "generator_cores": [0], "clients": clients,
            "seconds": 10.0, "warmup": 2.0, "rounds": 2, "mix": "ranking", "mean_candidates": 60.0,
            "load_average_before": [0.1, 0.2, 0.3], "load_average_after": [1.0, 0.8, 0.5],
            "gate": {"quiet": True, "reasons": [], "waited_s": 5.0, "offenders": []},
            "configurations": {DIRECT: {"cores": "1"}}}


def test_cpu_per_request_is_exact_for_the_read_tree_and_a_rate_for_the_other() -> None:
    direct, front, embedded = (triton_front.cpu_per_request(s) for s in three())
    assert direct["triton"] == pytest.approx(0.9) and direct["suite"] is None
    assert direct["core_busy"] == pytest.approx(1.0)  # 0.1 of a 10 s window over 1,000 answers
    assert direct["split_error"] == pytest.approx(0.0)  # 0.72 s / 8 s at 100 req/s is 0.9 ms, as read exactly
    assert direct["triton_calls"] == pytest.approx(1.0)
    # The suite's own figure is the load generator's; Triton's is 0.36 s / 8 s at 50 req/s.
    assert (front["suite"], front["triton"], front["processes"]) == pytest.approx((1.0, 0.9, 1.9))
    assert front["core_busy"] == pytest.approx(2.0)
    assert front["triton_calls"] == pytest.approx(0.5)  # 200 Triton requests for 400 suite requests
    assert embedded["model"] == pytest.approx(0.4) and front["model"] is None
    assert embedded["triton"] is None and embedded["processes"] == pytest.approx(1.0)


def test_a_step_without_answers_has_no_cpu_per_request() -> None:
    empty = step(FRONT, 64, 0, 0.0, 0.0, {"suite": 0.0, "triton": 0.0})
    empty["throughput_rps"] = 0.0
    figures = triton_front.cpu_per_request(empty)
    assert figures["processes"] is None and figures["core_busy"] is None and figures["triton"] is None


def test_ratios_pair_rounds_and_skip_a_round_one_side_lacks() -> None:
    steps = three(0) + three(1, front_busy=0.15)
    summary = triton_front.summarise(steps)
    assert triton_front.ratios(summary, DIRECT, "core_busy", 1) == pytest.approx([2.0, 3.0])
    assert triton_front.ratios(summary, DIRECT, "processes", 1) == pytest.approx([1.9 / 0.9] * 2)
    assert triton_front.ratios(summary, DIRECT, "core_busy", 64) == []
    lopsided = triton_front.summarise([s for s in steps if not (s["server"] == DIRECT and s["round"] == 1)])
    assert triton_front.ratios(lopsided, DIRECT, "core_busy", 1) == pytest.approx([2.0])


def test_the_report_gives_the_ratio_the_split_and_errors_by_code() -> None:
    steps = three(0) + three(1, front_busy=0.15)
    steps[1]["error_codes"] = {"DEADLINE_EXCEEDED": 3}
    steps[4]["error_codes"] = {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 2}
    text = "\n".join(triton_front.render(context([1]), steps, validity.verdict(steps, {})))
    assert "Written by `make bench-triton-front` (2026-12-07 03:00 UTC" in text
    # processes 1.9 / 0.9 in both rounds; core 2.0 / 1.0 then 3.0 / 1.0, against Triton direct and the embedded suite
    assert "| 1 | 2.11 [2.11, 2.11] | 2.50 [2.00, 3.00] | 2.50 [2.00, 3.00] |" in text
    assert "| 1 | 0.900 | 0.900 | 0.50 | 1.000 | +1.000 | 1.000 + 0.000 | 0.400 + 0.600 |" in text
    assert "| OIP ModelInfer | 1 | 50 [50, 50] | 1.00 | 2.0 | 3 | 1.000 [1.000, 1.000] | 0.900 [0.900, 0.900] | " \
           "1.900 [1.900, 1.900] | 2.500 [2.000, 3.000] | DEADLINE_EXCEEDED 4, UNAVAILABLE 2 |" in text
    assert "INVALID" not in text and "**valid**: 0 of 6 measured steps flagged" in text


def test_an_unsaturated_server_core_stamps_the_report_invalid_under_this_command() -> None:
    steps = [*three(0, clients=64)]
    steps[1]["machine"] = machine(0.8)  # 64 clients, yet the shared core idled a fifth of the window
    verdict = validity.verdict(steps, {})
    lines = triton_front.render(context([64]), steps, verdict)
    assert not verdict.valid and lines[0].startswith("> **INVALID")
    assert any("`make bench-triton-front` exited non-zero" in line for line in lines)
    assert any("infersuite in front of Triton" in line and "busy 0.80 < 0.95" in line for line in lines)


def test_an_imprecise_split_is_called_an_estimate() -> None:
    steps = three(0)
    steps[0]["inner_window"]["cpu_s"]["triton"] = 0.9  # 1.125 ms estimated against 0.9 ms read exactly
    text = "\n".join(triton_front.render(context([1]), steps, validity.verdict(steps, {})))
    assert "worst 0.250" in text and "The split is imprecise" in text
