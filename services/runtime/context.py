"""Per-request context the interceptor sets and the scheduler reads, without passing grpc around."""

from __future__ import annotations

from contextvars import ContextVar

# Absolute time.monotonic() by which the caller needs its answer; None = no deadline.
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)
