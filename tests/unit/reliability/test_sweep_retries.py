"""The sustainable-rate sweep (tests/reliability/scenarios.py): a failing step is tried again before the sweep
ends, so one stray refusal does not end it; a step that fails every try does. The load is a stand-in for
open_loop here (no sockets): each try's outcomes are scripted."""

from __future__ import annotations

import asyncio

import pytest

from tests.reliability import scenarios
from tests.reliability.load import LoadResult, Outcome


def _result(rate: float, refused: int) -> LoadResult:
    sent = int(rate)  # one second of load
    outcomes = [Outcome(i, i / rate, 0.0, 0.005, "RESOURCE_EXHAUSTED" if i < refused else "OK") for i in range(sent)]
    return LoadResult(rate, 1.0, outcomes)


def _sweep(monkeypatch: pytest.MonkeyPatch, refusals: dict[tuple[float, int], int], retries: int
           ) -> tuple[float, list[dict[str, object]]]:
    tries: dict[float, int] = {}

    async def scripted(channel, make, rate, seconds, seed=0):
        tries[rate] = tries.get(rate, 0) + 1
        return _result(rate, refusals.get((rate, tries[rate]), 0))

    monkeypatch.setattr(scenarios, "open_loop", scripted)
    return asyncio.run(scenarios.sustainable_rate(None, lambda i: None, [100.0, 200.0, 400.0, 800.0], 1.0,  # type: ignore[arg-type]
                                                  slo_ms=100.0, min_ok_share=0.999, retries=retries))


def test_a_step_with_one_stray_refusal_is_tried_again_and_the_sweep_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    best, steps = _sweep(monkeypatch, {(200.0, 1): 1, (800.0, 1): 50, (800.0, 2): 40}, retries=1)
    assert best == 400.0  # 200/s passed on its second try; 800/s failed both
    assert [(s["offered_rps"], s["try"]) for s in steps] == [(100.0, 1), (200.0, 1), (200.0, 2), (400.0, 1),
                                                              (800.0, 1), (800.0, 2)]


def test_without_retries_the_first_failing_try_ends_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    best, steps = _sweep(monkeypatch, {(200.0, 1): 1}, retries=0)
    assert best == 100.0 and [s["offered_rps"] for s in steps] == [100.0, 200.0]
