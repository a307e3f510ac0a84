"""Open-loop schedules: counts, rates, Poisson statistics, worker splits, traces."""

import numpy as np
import pytest

from infersuite.loadtest.schedule import arrival_offsets, load_trace, split_for_worker, trace_offsets, trace_rate


def test_constant_arrivals_are_evenly_spaced():
    offsets = arrival_offsets(250.0, 2.0, "constant", np.random.default_rng(0))
    assert len(offsets) == 500
    assert np.allclose(np.diff(offsets), 1 / 250)
    assert offsets[0] == 0.0 and offsets[-1] < 2.0


def test_poisson_arrivals_have_the_rate_and_exponential_gaps():
    offsets = arrival_offsets(1000.0, 20.0, "poisson", np.random.default_rng(1))
    assert len(offsets) == pytest.approx(20_000, rel=0.03)  # 20,000 expected, sd ~141
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1e-3, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV = 1
    assert np.all(offsets < 20.0) and np.all(gaps >= 0)


def test_the_same_seed_gives_the_same_schedule():
    a = arrival_offsets(300.0, 1.0, "poisson", np.random.default_rng(7))
    b = arrival_offsets(300.0, 1.0, "poisson", np.random.default_rng(7))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("rate", [0.0, -5.0])
def test_rate_must_be_positive(rate):
    with pytest.raises(ValueError, match="rate must be > 0"):
        arrival_offsets(rate, 1.0, "poisson", np.random.default_rng(0))


def test_workers_split_one_schedule_exactly():
    offsets = arrival_offsets(900.0, 1.0, "poisson", np.random.default_rng(2))
    parts = [split_for_worker(offsets, w, 4) for w in range(4)]
    assert sum(len(p) for p in parts) == len(offsets)
    assert np.array_equal(np.sort(np.concatenate(parts)), offsets)


def test_trace_is_parsed_shifted_and_sorted(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("# send times\n100.5\n100.0, extra column\n\n101.0\n")
    trace = load_trace(path)
    assert trace == (0.0, 0.5, 1.0)
    assert list(trace_offsets(trace, 0.8)) == [0.0, 0.5]
    assert trace_rate(trace) == pytest.approx(2.0)


def test_bad_trace_names_the_line(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("0.1\nsoon\n")
    with pytest.raises(ValueError, match=r"trace.txt:2: 'soon'"):
        load_trace(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no send times"):
        load_trace(path)
