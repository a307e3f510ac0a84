"""Per-request context the call wrapper (handler_wrapper.py) sets and the scheduler reads, no grpc passed."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

# Absolute time.monotonic() by which the caller needs its answer; None = no deadline.
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)

# Whether the caller still waits for its answer; None = the transport tells by cancelling the request's task
# (grpc.aio). The synchronous transport sets it: its cancellations reach the event loop through threads,
# later than the queue's next look at a request (infersuite/services/runtime/sync_transport.py).
request_alive: ContextVar[Callable[[], bool] | None] = ContextVar("request_alive", default=None)
