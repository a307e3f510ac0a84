"""The batcher combines requests only while that saves CPU on the model's own traffic
(infersuite/services/runtime/combine_choice.py): a fake model whose CPU counter follows a known cost law."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.combine_choice import CombineChoice
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.stats import ModelStats
from tests.fixtures import FakeModel
from tests.unit.runtime.test_batching import SEQ, _outputs, _request


def _feed(choice: CombineChoice, executions: int, single: float, combined: float) -> list[bool]:
    """Executions of 10 useful cells costing `single` or `combined` CPU seconds per cell, by the choice
    in force; returns the choices."""
    choices = []
    for _ in range(executions):
        choices.append(choice.combine())
        choice.record(10, 10 * (combined if choices[-1] else single))
    return choices


def test_undecided_combines_and_a_measured_verdict_holds_outside_its_probes() -> None:
    choice = CombineChoice(min_samples=4, probe_every=20, probe_length=5)
    assert choice.combine() and choice.saves_cpu is None
    # The probe of singles; once decided (after 4 of them), the probe window runs the other choice: combining.
    assert _feed(choice, 20, single=0.1, combined=0.2) == [True] * 15 + [False] * 4 + [True]
    assert choice.saves_cpu is False
    assert choice.estimate(False) == pytest.approx(0.1) and choice.estimate(True) == pytest.approx(0.2)
    assert _feed(choice, 20, single=0.1, combined=0.2) == [False] * 15 + [True] * 5  # now combining is the probe


def test_the_verdict_follows_a_change_of_traffic() -> None:
    choice = CombineChoice(min_samples=4, probe_every=20, probe_length=5, weight=0.5)
    _feed(choice, 20, single=0.1, combined=0.2)
    assert choice.saves_cpu is False
    _feed(choice, 40, single=0.1, combined=0.05)  # small equal requests: combining now costs half per cell
    assert choice.saves_cpu is True and choice.estimate(True) < choice.estimate(False)


@pytest.mark.parametrize("bad", [(0, 1.0), (1, -1.0)])
def test_meaningless_samples_are_ignored(bad: tuple[int, float]) -> None:
    choice = CombineChoice(min_samples=1, probe_every=4, probe_length=1)
    choice.record(*bad)
    assert choice.estimate(False) is None and choice.estimate(True) is None


class _CostedModel(FakeModel):
    """CPU per execution = fixed + per padded cell (its counter read like onnxruntime's)."""

    def __init__(self, fixed_s: float, per_cell_s: float) -> None:
        super().__init__("m", _outputs)
        self.fixed_s, self.per_cell_s = fixed_s, per_cell_s
        self.compute_cpu_s = 0.0
        self.inline_calls = 0

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.compute_cpu_s += self.fixed_s + self.per_cell_s * inputs["tokens"].size
        return await super().infer(inputs, outputs)

    def infer_now(self, inputs: Mapping[str, np.ndarray],
                  outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.inline_calls += 1
        self.compute_cpu_s += self.fixed_s + self.per_cell_s * inputs["tokens"].size
        self.calls.append(dict(inputs))
        return self._outputs(inputs)


async def _closed_loop(batcher: DynamicBatcher, lengths: list[int], rounds: int) -> None:
    """len(lengths) clients, each sending its length's request `rounds` times, answers checked."""
    async def client(length: int) -> None:
        values = list(range(1, length + 1))
        for _ in range(rounds):
            result = await batcher.submit(_request(values))
            assert result["total"].tolist() == [float(sum(values))]

    await asyncio.gather(*(client(n) for n in lengths))


def _batcher(model: _CostedModel, metrics: Metrics) -> DynamicBatcher:
    policy = BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0, max_queue_size=64, max_padding_fraction=1.0,
                            inline_max_s=1.0)
    batcher = DynamicBatcher(model, policy, SEQ, metrics, ModelStats())
    batcher._choice = CombineChoice(min_samples=8, probe_every=64, probe_length=8)  # the default's shape, shorter
    batcher._cpu_clock = lambda: model.compute_cpu_s  # the fake's CPU: its known cost law
    return batcher


def _gauge(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("infersuite_model_batching_combines", {"model": "m"})


async def test_a_mix_where_padding_costs_more_than_it_saves_stops_combining() -> None:
    model = _CostedModel(fixed_s=1e-6, per_cell_s=1e-4)  # per-run overhead negligible: padding is pure loss
    metrics = Metrics()
    batcher = _batcher(model, metrics)
    await _closed_loop(batcher, [1, 60, 2, 50, 3, 40, 4, 30], rounds=150)
    assert batcher._choice.saves_cpu is False and _gauge(metrics) == 0
    assert batcher._choice.estimate(True) > batcher._choice.estimate(False)
    before = len(model.calls)
    await _closed_loop(batcher, [1, 60, 2, 50], rounds=20)  # concurrent clients queue (admission sees them)...
    calls = model.calls[before:]
    assert sum(1 for c in calls if c["tokens"].shape[0] == 1) >= 0.8 * len(calls)  # ...and run one by one
    before = model.inline_calls
    await _closed_loop(batcher, [60], rounds=20)  # a lone client's requests run inline
    assert model.inline_calls - before == 20
    await batcher.close()


async def test_small_equal_requests_keep_combining() -> None:
    model = _CostedModel(fixed_s=1e-3, per_cell_s=1e-6)  # per-run overhead dominates: combining halves it
    metrics = Metrics()
    batcher = _batcher(model, metrics)
    await _closed_loop(batcher, [3] * 8, rounds=150)
    assert batcher._choice.saves_cpu is True and _gauge(metrics) == 1
    # Concurrent clients' requests queue (each yields before running inline) and share executions.
    assert sum(c["tokens"].shape[0] for c in model.calls if c["tokens"].shape[0] > 1) >= 0.8 * 8 * 150
    await batcher.close()
