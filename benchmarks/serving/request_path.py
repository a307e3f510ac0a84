"""The CPU of OIP ModelInfer's request path without gRPC and without the model, per request.

    python -m benchmarks.serving.request_path [--requests 500] [--rounds 5]

Loads din-fp32 from the shipped repository into the runtime (ModelManager, OipServicer), computes the
answers of the ranking mix's requests once, then replaces the onnxruntime session by those answers and
times, on this thread's CPU clock, what the synchronous transport's thread does for each request besides
gRPC's own work and the model: parse the request, `model_infer_sync` (decoding and its checks, limits,
admission, metrics, statistics, the non-finite check, the answer) and serialize the answer. Pin it to
one core (taskset -c 1) on a quiet machine; every round is printed, the figure to read is their median.
The model's and gRPC's CPU are what `make bench-transport` measures around this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

from benchmarks.serving.workload import MODEL, make_requests
from infersuite.services.runtime import RuntimeSettings
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.oip.servicer import OipServicer
from infersuite.services.runtime.repository import ModelRepository


class _Answers:
    """Stands in for the onnxruntime session: the precomputed answers, in the order of the requests."""

    def __init__(self, answers: list[dict[str, np.ndarray]]):
        self._answers, self.served = answers, 0

    def run(self, names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        answer = self._answers[self.served % len(self._answers)]
        self.served += 1
        return [answer[name] for name in (names or answer)]


class _Alive:
    """The part of a synchronous gRPC context the path reads: the client is still there."""

    def is_active(self) -> bool:
        return True


async def measure(repository: Path, count: int, rounds: int) -> list[float]:
    """Microseconds of CPU per request, one figure per round."""
    settings = RuntimeSettings(model_repository=repository, intra_op_threads=1)
    metrics = Metrics()
    manager = ModelManager(ModelRepository(repository), OnnxRuntimeBackend(settings), metrics, settings)
    await manager.load([MODEL])
    try:
        servicer = OipServicer(manager, settings.max_message_bytes, metrics)
        vocabulary = json.loads((repository / MODEL / "1" / "meta.json").read_text())["vocabulary"]
        requests = make_requests("ranking", count, vocabulary["n_items"], vocabulary["n_categories"])
        model: Any = manager.get(MODEL)
        names = [spec.name for spec in model.outputs]
        answers = _Answers([dict(zip(names, model._session.run(names, r.feeds()), strict=True)) for r in requests])
        model._session = answers
        payloads, context = [r.infer_request() for r in requests], _Alive()
        figures = []
        for _ in range(rounds + 1):  # the first round warms up
            answers.served = 0
            start = time.thread_time()
            for payload in payloads:
                request = service_pb2.ModelInferRequest.FromString(payload)
                servicer.model_infer_sync(request, context).SerializeToString()  # type: ignore[arg-type]
            figures.append((time.thread_time() - start) / len(payloads) * 1e6)
        return figures[1:]
    finally:
        await manager.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.request_path",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"))
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.repository, args.requests, args.rounds))
    print(f"OIP ModelInfer request path without gRPC and the model: {statistics.median(figures):.1f} us per request "
          f"(median of {len(figures)} rounds: {', '.join(f'{f:.1f}' for f in figures)}; {args.requests} ranking "
          "requests)")


if __name__ == "__main__":
    main()
