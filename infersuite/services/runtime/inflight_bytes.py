"""A process-wide budget of request bytes being answered (INFERSUITE_MAX_INFLIGHT_BYTES).

Each request's limits (infersuite/services/runtime/limits.py) bound one request before allocation; this bounds
them together. A request is admitted when the serialized bytes of every request being answered plus
its own fit the budget, or when nothing else is being answered (so a request that fits the message
limit is never refused forever); otherwise it is refused at once with RESOURCE_EXHAUSTED and a retry
hint, before it is decoded into tensors, queued or run, which is where a request's memory multiplies.
Unary calls are counted from the handler's start to its answer; each message of a request stream
(OIP ModelStreamInfer, ctr ScoreStream) from its read to its answer, the refusal then being that
message's own answer. The bytes have been received by then: what the budget bounds is the work
that follows. Bytes still in gRPC core's buffers are bounded by max_message_bytes per call and HTTP/2
flow control; how many received calls core holds before the server takes them up is not bounded
(grpcio 1.81's Python server applies none of core's pending-call limits: measured, see docs/limits.md).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter, Gauge

from infersuite.services.runtime.errors import ResourceExhausted
from infersuite.services.runtime.metrics import Metrics

RETRY_AFTER_S = 0.05  # the hint of a refusal: about one large request's time to answer


class InflightBytes:
    """Admission by bytes in flight; `limit` 0 = no budget (every request admitted, nothing counted)."""

    def __init__(self, limit: int, gauge: Gauge, refusals: Counter):
        self.limit, self.bytes, self.requests = limit, 0, 0
        self._gauge, self._refusals = gauge, refusals
        self._lock = threading.Lock()  # the synchronous transport admits from several threads

    @classmethod
    def on(cls, metrics: Metrics, limit: int = 0) -> InflightBytes:
        """A budget reported on this registry (infersuite_inflight_request_bytes, refusals counted in
        infersuite_refused_calls_total{reason="inflight_bytes"})."""
        return cls(limit, metrics.inflight_bytes, metrics.refused_calls.labels("inflight_bytes"))

    def admit(self, request: Any) -> int:
        """Reserves the request's bytes and returns them (for `release`); raises ResourceExhausted when over."""
        if not self.limit:
            return 0
        size = len(request) if isinstance(request, bytes | bytearray) else int(request.ByteSize())  # raw: len
        with self._lock:
            if self.limit and self.requests and self.bytes + size > self.limit:
                self._refusals.inc()
                raise ResourceExhausted(
                    f"the server is answering {self.bytes} bytes of requests, and this {size}-byte request would "
                    f"exceed its budget of {self.limit} (INFERSUITE_MAX_INFLIGHT_BYTES); retry later",
                    retry_after_s=RETRY_AFTER_S)
            self.bytes += size
            self.requests += 1
            self._gauge.set(self.bytes)
        return size

    def release(self, size: int) -> None:
        if not self.limit:
            return
        with self._lock:
            self.bytes -= size
            self.requests -= 1
            self._gauge.set(self.bytes)
