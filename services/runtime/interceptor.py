"""The one interceptor: maps the error hierarchy to gRPC codes and records request metrics.

Unknown exceptions become INTERNAL "Internal server error"; their details go to the log only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from services.runtime.context import request_deadline
from services.runtime.errors import InferSuiteError
from services.runtime.metrics import Metrics

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"


class _Outcome:
    """The status a call ended with, filled in while the handler runs."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK


async def _abort_for(exc: BaseException, context: aio.ServicerContext, outcome: _Outcome) -> None:
    """Turns an exception into the matching gRPC status (always raises)."""
    if isinstance(exc, InferSuiteError):
        outcome.code = grpc.StatusCode[exc.code]
        if exc.trailing_metadata:
            context.set_trailing_metadata(exc.trailing_metadata)
        await context.abort(outcome.code, exc.message)
    log.exception("unhandled error in handler", exc_info=exc)
    outcome.code = grpc.StatusCode.INTERNAL
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _set_deadline(context: aio.ServicerContext) -> None:
    remaining = context.time_remaining()
    request_deadline.set(None if remaining is None else time.monotonic() + remaining)


def _record_abort(context: aio.ServicerContext, outcome: _Outcome) -> None:
    code = context.code()
    outcome.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class ErrorAndMetricsInterceptor(aio.ServerInterceptor):
    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        if handler.unary_unary or handler.stream_unary:
            return self._wrap_unary_response(handler, service, method)
        return self._wrap_stream_response(handler, service, method)

    def _observe(self, service: str, method: str, outcome: _Outcome, start: float) -> None:
        self._metrics.requests.labels(service, method, outcome.code.name).inc()
        self._metrics.request_latency.labels(service, method).observe(time.perf_counter() - start)

    def _wrap_unary_response(self, handler: grpc.RpcMethodHandler, service: str, method: str) -> Any:
        inner = handler.unary_unary or handler.stream_unary

        async def behaviour(request: Any, context: aio.ServicerContext) -> Any:
            start, outcome = time.perf_counter(), _Outcome()
            _set_deadline(context)
            try:
                return await inner(request, context)
            except aio.AbortError:
                _record_abort(context, outcome)
                raise
            except asyncio.CancelledError:
                outcome.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # every other error is mapped, never leaked
                await _abort_for(exc, context, outcome)
            finally:
                self._observe(service, method, outcome, start)

        factory = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                   else grpc.stream_unary_rpc_method_handler)
        return factory(behaviour, handler.request_deserializer, handler.response_serializer)

    def _wrap_stream_response(self, handler: grpc.RpcMethodHandler, service: str, method: str) -> Any:
        inner = handler.unary_stream or handler.stream_stream

        async def behaviour(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            start, outcome = time.perf_counter(), _Outcome()
            _set_deadline(context)
            try:
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        yield response
                else:
                    await result
            except aio.AbortError:
                _record_abort(context, outcome)
                raise
            except asyncio.CancelledError:
                outcome.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                await _abort_for(exc, context, outcome)
            finally:
                self._observe(service, method, outcome, start)

        factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                   else grpc.stream_stream_rpc_method_handler)
        return factory(behaviour, handler.request_deserializer, handler.response_serializer)
