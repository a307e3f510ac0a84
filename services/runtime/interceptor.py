"""The one interceptor: maps the error hierarchy to gRPC codes and records request metrics.

Unknown exceptions become INTERNAL "Internal server error"; their details go to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from services.runtime.context import request_deadline
from services.runtime.errors import InferSuiteError, InvalidArgument
from services.runtime.metrics import Metrics

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"
# Status messages travel in a trailer the client caps at 16 KiB: a message quoting a huge client
# value (a 64 KiB model name) would make the client drop the whole status (tests/reliability).
MAX_MESSAGE_CHARS = 2048


class _Undecodable:
    """Stands in for a request whose bytes are not a valid protobuf message of the method's type."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc answers UNKNOWN (naming the Python exception) when a deserializer raises; this turns
    undecodable bytes into a value the handler wrapper refuses with INVALID_ARGUMENT instead."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _Undecodable(getattr(getattr(deserializer, "__self__", None), "__name__", "request"))

    return deserialize


class _DecodedStream:
    """The requests of a client stream. An undecodable message raises InvalidArgument from
    `__anext__` (an `async for` servicer ends the call with it); the stream can be read on after
    it, which services/runtime/streaming.py does to answer that one message with an error."""

    def __init__(self, messages: Any):
        self._messages = messages.__aiter__()

    def __aiter__(self) -> _DecodedStream:
        return self

    async def __anext__(self) -> Any:
        message = await self._messages.__anext__()
        if isinstance(message, _Undecodable):
            raise InvalidArgument(f"a message of the stream is not a valid {message.type_name} protobuf message")
        return message


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "... (truncated)"


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
        await context.abort(outcome.code, _short(exc.message))
    log.exception("unhandled error in handler", exc_info=exc)
    outcome.code = grpc.StatusCode.INTERNAL
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _deadline(context: aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


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

    @contextlib.asynccontextmanager
    async def _mapped(self, service: str, method: str, context: aio.ServicerContext,
                      request: Any) -> AsyncIterator[None]:
        """One call: deadline in context, errors mapped to gRPC codes, metrics recorded."""
        start, outcome = time.perf_counter(), _Outcome()
        request_deadline.set(_deadline(context))
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument(f"the request is not a valid {request.type_name} protobuf message")
            yield
        except aio.AbortError:
            code = context.code()
            outcome.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            outcome.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # every other error is mapped, never leaked
            await _abort_for(exc, context, outcome)
        finally:
            self._metrics.requests.labels(service, method, outcome.code.name).inc()
            self._metrics.request_latency.labels(service, method).observe(time.perf_counter() - start)

    def _wrap_unary_response(self, handler: grpc.RpcMethodHandler, service: str, method: str) -> Any:
        inner = handler.unary_unary or handler.stream_unary

        async def behaviour(request: Any, context: aio.ServicerContext) -> Any:
            async with self._mapped(service, method, context, request):
                return await inner(request, context)

        async def stream_behaviour(requests: Any, context: aio.ServicerContext) -> Any:
            return await behaviour(_DecodedStream(requests), context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(behaviour, _tolerant(handler.request_deserializer),
                                                       handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(stream_behaviour, _tolerant(handler.request_deserializer),
                                                    handler.response_serializer)

    def _wrap_stream_response(self, handler: grpc.RpcMethodHandler, service: str, method: str) -> Any:
        inner = handler.unary_stream or handler.stream_stream

        async def behaviour(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            if handler.stream_stream:
                request = _DecodedStream(request)
            async with self._mapped(service, method, context, request):
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        yield response
                else:
                    await result

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(behaviour, _tolerant(handler.request_deserializer),
                                                        handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(behaviour, _tolerant(handler.request_deserializer),
                                                     handler.response_serializer)
