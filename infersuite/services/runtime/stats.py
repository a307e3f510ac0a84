"""Cumulative per-model statistics in the shape of the Open Inference Protocol's ModelStatistics."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class ModelStats:
    success_count: int = 0  # requests answered
    success_ns: int = 0  # their total end-to-end time in the runtime
    failure_count: int = 0
    failure_ns: int = 0
    queue_ns: int = 0
    compute_ns: int = 0  # batch executions' time
    execution_count: int = 0  # batches run
    inference_count: int = 0  # requests computed (sum of batch members)
    last_inference_ms: int = 0  # epoch milliseconds

    def record_batch(self, requests: int, seconds: float) -> None:
        self.execution_count += 1
        self.inference_count += requests
        self.compute_ns += int(seconds * 1e9)
        self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, requests: int) -> None:
        self.execution_count += 1

    def plus(self, other: ModelStats) -> ModelStats:
        """Both processes' statistics together (workers of one port: infersuite/services/runtime/model_manager.py)."""
        summed = {name: getattr(self, name) + getattr(other, name) for name in _COUNTS}
        return ModelStats(**summed, last_inference_ms=max(self.last_inference_ms, other.last_inference_ms))

    def record_request(self, ok: bool, seconds: float) -> None:
        if ok:
            self.success_count += 1
            self.success_ns += int(seconds * 1e9)
        else:
            self.failure_count += 1
            self.failure_ns += int(seconds * 1e9)


_COUNTS = ("success_count", "success_ns", "failure_count", "failure_ns", "queue_ns", "compute_ns", "execution_count",
           "inference_count")
