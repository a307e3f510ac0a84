"""Open-loop arrival schedules: intended send offsets (seconds from the step start).

A schedule is fixed before the step starts, so when a send is late the lateness is visible
(and charged to the latency measured from the intended time) instead of shifting the rest of
the schedule, which would hide the server's stall (coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class ArrivalSpec:
    """How requests arrive in an open-loop step."""

    rate: float  # requests per second over all processes
    arrival: Arrival = "poisson"  # inter-arrival times: constant or exponential (Poisson process)
    trace: tuple[float, ...] | None = None  # replayed offsets (s); overrides rate/arrival


def arrival_offsets(rate: float, duration_s: float, arrival: Arrival, rng: np.random.Generator) -> np.ndarray:
    """Sorted send offsets in [0, duration_s) for a mean rate (requests/s)."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    expected = rate * duration_s
    if arrival == "constant":
        return np.arange(int(np.floor(expected)), dtype=np.float64) / rate
    if arrival == "poisson":
        # Draw a little more than the expected count, then cut at the duration.
        count = int(expected + 6 * np.sqrt(expected) + 16)
        offsets = np.cumsum(rng.exponential(1.0 / rate, count))
        while offsets[-1] < duration_s:  # astronomically rare; keep the schedule complete
            offsets = np.concatenate([offsets, offsets[-1] + np.cumsum(rng.exponential(1.0 / rate, count))])
        return offsets[offsets < duration_s]
    raise ValueError(f"unknown arrival process {arrival!r} (use constant or poisson)")


def split_for_worker(offsets: np.ndarray, worker: int, workers: int) -> np.ndarray:
    """Round-robin share of one schedule, so W processes together follow it exactly."""
    return offsets[worker::workers]


def load_trace(path: Path) -> tuple[float, ...]:
    """A replay trace: one send time per line (seconds, absolute or relative); '#' comments.

    Times are shifted so the first send is at 0 and sorted; a trace with no times is an error.
    """
    times = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            times.append(float(text.split(",")[0]))
        except ValueError:
            raise ValueError(f"{path}:{number}: {text!r} is not a send time in seconds") from None
    if not times:
        raise ValueError(f"{path}: the trace has no send times")
    ordered = np.sort(np.asarray(times, dtype=np.float64))
    return tuple((ordered - ordered[0]).tolist())


def trace_offsets(trace: tuple[float, ...], duration_s: float) -> np.ndarray:
    """The trace's send times inside [0, duration_s) (a trace shorter than the step ends early)."""
    offsets = np.asarray(trace, dtype=np.float64)
    return offsets[offsets < duration_s]


def trace_rate(trace: tuple[float, ...]) -> float:
    """Mean rate of a trace (requests/s), for reports and plots."""
    span = trace[-1] - trace[0]
    return (len(trace) - 1) / span if span > 0 and len(trace) > 1 else float(len(trace))
