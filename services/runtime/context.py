"""Per-request context the call wrapper (handler_wrapper.py) sets and the scheduler reads, no grpc passed."""

from __future__ import annotations

from contextvars import ContextVar

# Absolute time.monotonic() by which the caller needs its answer; None = no deadline.
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)
