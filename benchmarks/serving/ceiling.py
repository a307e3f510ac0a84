"""The ceiling: bare onnxruntime (one intra-op thread, no gRPC) on the server's core, per batch size.

Batches are formed as the runtime's batcher would form them (infersuite/services/runtime/batch_layout.py's
BatchLayout): from a window of 64 waiting requests (64 closed-loop clients), sorted by history
length, chunked into batches of B. Interleaved passes over the batch sizes (3 by default), median
per size. `make bench-serving` runs one pass in each of its rounds, beside the suite and the peers,
so the ceiling shares their minutes of the machine. Run in a pinned subprocess:
`python -m benchmarks.serving.ceiling <repository> <mix> <core> <seconds> [passes]` prints JSON:
{"rates": {batch: req/s}, "session": the onnxruntime settings, "machine": the window's machine
report (validity.window_report: the core's busy share and who else used it)}.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.serving import validity
from benchmarks.serving.machine import Window, take_sample
from benchmarks.serving.workload import MODEL, make_requests
from infersuite.services.runtime.batch_layout import BatchLayout

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
PASSES = 3
WINDOW = 64
SESSION = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "providers": "CPUExecutionProvider",
           "run": "session.run inline, one request or batch after another, no gRPC"}


def _batches(layout: BatchLayout, requests: list, size: int) -> list[dict[str, np.ndarray]]:
    batches = []
    for start in range(0, len(requests) - WINDOW + 1, WINDOW):
        window = sorted(requests[start:start + WINDOW], key=lambda r: r.history_items.size)
        for chunk in range(0, WINDOW, size):
            feeds = [r.feeds() for r in window[chunk:chunk + size]]
            batches.append(layout.combine(feeds, [layout.describe(f) for f in feeds]))
    return batches[:400]


def measure(repository: Path, mix: str, seconds: float, passes: int = PASSES) -> tuple[dict[int, float], Window]:
    """-> (median req/s by batch size, the machine over the timed passes)."""
    model_dir = repository / MODEL / "1"
    meta = json.loads((model_dir / "meta.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = SESSION["intra_op_num_threads"]  # type: ignore[assignment]
    options.inter_op_num_threads = SESSION["inter_op_num_threads"]  # type: ignore[assignment]
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    vocab = meta["vocabulary"]
    requests = make_requests(mix, 2048, vocab["n_items"], vocab["n_categories"], seed=1)
    layout = BatchLayout.from_meta(meta)
    batches = {size: _batches(layout, requests, size) for size in BATCH_SIZES}
    samples: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    for chosen in batches.values():
        session.run(None, chosen[0])  # warm: first runs allocate
    before = take_sample(os.getppid())
    for _ in range(passes):  # interleaved passes: the machine's speed drifts between seconds
        for size, chosen in batches.items():
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / passes:
                session.run(None, chosen[done % len(chosen)])
                done += 1
            samples[size].append(done * size / (time.perf_counter() - start))
    window = Window(before, take_sample(os.getppid()))
    return {size: statistics.median(rates) for size, rates in samples.items()}, window


def main() -> None:
    repository, mix, core, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    passes = int(sys.argv[5]) if len(sys.argv) > 5 else PASSES
    os.sched_setaffinity(0, {core})
    rates, window = measure(repository, mix, seconds, passes)
    print(json.dumps({"rates": rates, "session": SESSION,
                      "machine": validity.window_report(window, [core], [])}))


if __name__ == "__main__":
    main()
