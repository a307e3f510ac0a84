"""The ceiling: bare onnxruntime (one intra-op thread, no gRPC) on the server's core, per batch size.

Batches are formed as the runtime's batcher would form them (services/runtime/padding.py's
BatchLayout): from a window of 64 waiting requests (64 closed-loop clients), sorted by history
length, chunked into batches of B. Three interleaved passes over the batch sizes, median per size.
Run in a pinned subprocess:
`python -m benchmarks.serving.ceiling <repository> <mix> <core> <seconds>` prints JSON.
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

from benchmarks.serving.workload import MODEL, make_requests
from services.runtime.padding import BatchLayout

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
PASSES = 3
WINDOW = 64


def _batches(layout: BatchLayout, requests: list, size: int) -> list[dict[str, np.ndarray]]:
    batches = []
    for start in range(0, len(requests) - WINDOW + 1, WINDOW):
        window = sorted(requests[start:start + WINDOW], key=lambda r: r.history_items.size)
        for chunk in range(0, WINDOW, size):
            feeds = [r.feeds() for r in window[chunk:chunk + size]]
            batches.append(layout.combine(feeds, [layout.describe(f) for f in feeds]))
    return batches[:400]


def measure(repository: Path, mix: str, seconds: float) -> dict[int, float]:
    model_dir = repository / MODEL / "1"
    meta = json.loads((model_dir / "meta.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    vocab = meta["vocabulary"]
    requests = make_requests(mix, 2048, vocab["n_items"], vocab["n_categories"], seed=1)
    layout = BatchLayout.from_meta(meta)
    batches = {size: _batches(layout, requests, size) for size in BATCH_SIZES}
    samples: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    for _ in range(PASSES):  # interleaved passes: the machine's speed drifts between seconds
        for size, chosen in batches.items():
            session.run(None, chosen[0])
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / PASSES:
                session.run(None, chosen[done % len(chosen)])
                done += 1
            samples[size].append(done * size / (time.perf_counter() - start))
    return {size: statistics.median(rates) for size, rates in samples.items()}


def main() -> None:
    repository, mix, core, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    os.sched_setaffinity(0, {core})
    print(json.dumps(measure(repository, mix, seconds)))


if __name__ == "__main__":
    main()
