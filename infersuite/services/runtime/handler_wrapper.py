"""The one handler wrapper: maps the error hierarchy to gRPC codes and records request metrics.

Unknown exceptions become INTERNAL "Internal server error"; their details go to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from infersuite.services.runtime.call_limit import AioCallLimit
from infersuite.services.runtime.context import request_deadline
from infersuite.services.runtime.errors import InferSuiteError, InvalidArgument, Unauthenticated, Unavailable
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.security import UNAUTHENTICATED_MESSAGE, BearerToken
from infersuite.services.runtime.status import error_status

log = logging.getLogger(__name__)



class Undecodable:
    """Stands in for a request whose bytes are not a valid protobuf message of the method's type."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc answers UNKNOWN (naming the Python exception) when a deserializer raises; this turns
    undecodable bytes into a value the handler wrapper refuses with INVALID_ARGUMENT instead."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return Undecodable(getattr(getattr(deserializer, "__self__", None), "__name__", "request"))

    return deserialize


class _DecodedStream:
    """The requests of a client stream. An undecodable message raises InvalidArgument from
    `__anext__` (an `async for` servicer ends the call with it); the stream can be read on after
    it, which infersuite/services/runtime/streaming.py does to answer that one message with an error."""

    def __init__(self, messages: Any):
        self._messages = messages.__aiter__()

    def __aiter__(self) -> _DecodedStream:
        return self

    async def __anext__(self) -> Any:
        message = await self._messages.__anext__()
        if isinstance(message, Undecodable):
            raise InvalidArgument(f"a message of the stream is not a valid {message.type_name} protobuf message")
        return message


class _Outcome:
    """The status a call ended with, filled in while the handler runs."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK


async def _abort_for(exc: BaseException, context: aio.ServicerContext, outcome: _Outcome) -> None:
    """Turns an exception into the matching gRPC status (always raises)."""
    outcome.code, message = error_status(exc, "a handler")
    if isinstance(exc, InferSuiteError) and exc.trailing_metadata:
        context.set_trailing_metadata(exc.trailing_metadata)
    await context.abort(outcome.code, message)


ANSWERED_CODES = tuple(grpc.StatusCode[name] for name in (
    "OK", "CANCELLED", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "UNAUTHENTICATED"))
# A call cancelled this close to (or after) its deadline was ended by the deadline, as its client sees it.
# The client's cancel at its deadline reaches the server before the server's own copy of the deadline
# (which started when the request arrived): by the transit time, more on a loaded machine.
DEADLINE_SLACK_S = 0.05


def _deadline(context: aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class MethodMetrics:
    """The metric children of one RPC method, looked up once instead of per call."""

    def __init__(self, metrics: Metrics, service: str, method: str):
        self._requests, self._labels = metrics.requests, (service, method)
        # Series at 0 from the start for every code this server answers with: increase() and alerts
        # see the first one (a series born at 1 shows no increase).
        self._by_code: dict[grpc.StatusCode, Any] = {
            code: metrics.requests.labels(service, method, code.name) for code in ANSWERED_CODES}
        self.latency = metrics.request_latency.labels(service, method)

    def count(self, code: grpc.StatusCode) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(*self._labels, code.name)
        child.inc()


SHUTTING_DOWN = "the server is shutting down: nothing was run for this call; retry on another replica"
HEALTH_PREFIX = "/grpc.health.v1.Health/"


class Closing:
    """The server's stop as its calls see it (InferSuiteServer.stop). Once `refusing`, every new call but
    health's is answered UNAVAILABLE by the server itself before anything runs (safe to retry), while the
    calls taken up before go on. The server stops its transport only after that: a gRPC server's stop
    cancels the calls it has received but not yet handed to its handlers (reports/stop_backlog.md), and
    near capacity those include calls sent before the signal; answered here they get a retry-safe refusal
    instead of CANCELLED. `last_refusal` tells the server when the calls stopped coming."""

    def __init__(self) -> None:
        self.refusing = False
        self.last_refusal = 0.0
        self.refused = 0

    def refuse(self) -> None:
        self.last_refusal = time.monotonic()
        self.refused += 1
        raise Unavailable(SHUTTING_DOWN)


def per_method(metrics: Metrics, auth: BearerToken | None, full_method: str,
               closing: Closing | None = None) -> tuple[MethodMetrics, BearerToken | None, Closing | None]:
    """What a wrapper keeps per method (either transport): its metric children, the token check when the
    method is guarded, and the server's stop (health's methods keep answering NOT_SERVING through it)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return (MethodMetrics(metrics, service, method), auth if auth is not None and auth.guards(full_method) else None,
            None if full_method.startswith(HEALTH_PREFIX) else closing)


def refuse_early(auth: BearerToken | None, context: Any, request: Any, closing: Closing | None = None) -> None:
    """A call's first checks (either transport): the server's stop, the bearer token, then a request
    that did not decode."""
    if closing is not None and closing.refusing:
        closing.refuse()
    if auth is not None and not auth.accepts(context):
        raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
    refuse_undecodable(request)


def refuse_undecodable(request: Any) -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument(f"the request is not a valid {request.type_name} protobuf message")


class HandlerWrapper:
    """Wraps every RPC handler once, when it is registered: request deadline in context, optional
    bearer-token check, errors mapped to gRPC codes, request metrics recorded.

    Done at registration rather than as a grpc.aio ServerInterceptor, whose `intercept_service`
    runs as an extra coroutine on every call and rebuilds the wrapped handler each time (measured
    in reports/serving.md). Servicers register through `RegisteringServer`, unchanged.
    """

    def __init__(self, metrics: Metrics, auth: BearerToken | None = None, budget: InflightBytes | None = None,
                 closing: Closing | None = None, call_limit: AioCallLimit | None = None):
        self._metrics, self._auth = metrics, auth
        self._budget = budget or InflightBytes.on(metrics)
        self._closing = closing
        self._call_limit = call_limit

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler | None) -> Any:
        if handler is None:
            return None
        metrics, auth, closing = per_method(self._metrics, self._auth, full_method, self._closing)
        # Health answers probes under any load (call_limit.py); every other call takes a place.
        places = None if full_method.startswith(HEALTH_PREFIX) else self._call_limit
        if handler.unary_unary or handler.stream_unary:
            return self._wrap_unary_response(handler, metrics, auth, closing, places)
        return self._wrap_stream_response(handler, metrics, auth, closing, places)

    @staticmethod
    def _refused(places: AioCallLimit | None, closing: Closing | None, context: aio.ServicerContext,
                 metrics: MethodMetrics) -> bool:
        """Past the call limit: the call is answered RESOURCE_EXHAUSTED with pushback by setting its status (the
        cheapest refusal from a handler: an exception through _mapped and grpc.aio's abort cost ~60 us more), and
        the behaviour returns at once. A stopping server's refusal (UNAVAILABLE, in _mapped) comes first."""
        if places is None or not places.full or (closing is not None and closing.refusing):
            return False
        refused = time.perf_counter()
        places.refuse(context)
        metrics.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        metrics.latency.observe(time.perf_counter() - refused)
        return True

    @contextlib.asynccontextmanager
    async def _mapped(self, metrics: MethodMetrics, context: aio.ServicerContext, request: Any,
                      auth: BearerToken | None, closing: Closing | None, places: AioCallLimit | None = None,
                      unary: bool = False) -> AsyncIterator[None]:
        """One call: deadline in context, its place within the call limit (`_refused` has admitted it), errors
        mapped to gRPC codes, metrics recorded."""
        start, outcome = time.perf_counter(), _Outcome()
        deadline = _deadline(context)
        request_deadline.set(deadline)
        placed: float | None = None
        try:
            refuse_early(auth, context, request, closing)
            if places is not None:
                placed = places.enter()
            yield
        except aio.AbortError:
            code = context.code()
            outcome.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:  # the client cancelled, or gRPC ended the call at its deadline
            expired = deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_S
            outcome.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # every other error is mapped, never leaked
            await _abort_for(exc, context, outcome)
        finally:
            if placed is not None:
                places.leave(placed, unary)  # type: ignore[union-attr]
            metrics.count(outcome.code)
            metrics.latency.observe(time.perf_counter() - start)

    def _wrap_unary_response(self, handler: grpc.RpcMethodHandler, metrics: MethodMetrics,
                             auth: BearerToken | None, closing: Closing | None, places: AioCallLimit | None) -> Any:
        inner = handler.unary_unary or handler.stream_unary
        budget = self._budget
        decode = tolerant(handler.request_deserializer) or (lambda data: data)

        async def behaviour(data: bytes, context: aio.ServicerContext) -> Any:
            if self._refused(places, closing, context, metrics):
                return None
            # The request arrives as bytes: a call refused above (stop, token, call limit, budget) is never decoded.
            async with self._mapped(metrics, context, None, auth, closing, places, unary=True):
                size = budget.admit(data)  # before the handler decodes anything (inflight_bytes.py)
                try:
                    request = decode(data)
                    refuse_undecodable(request)
                    return await inner(request, context)
                finally:
                    budget.release(size)

        async def stream_behaviour(requests: Any, context: aio.ServicerContext) -> Any:
            if self._refused(places, closing, context, metrics):
                return None
            decoded = _DecodedStream(requests)
            async with self._mapped(metrics, context, decoded, auth, closing, places):
                return await inner(decoded, context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(behaviour, None, handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(stream_behaviour, tolerant(handler.request_deserializer),
                                                    handler.response_serializer)

    def _wrap_stream_response(self, handler: grpc.RpcMethodHandler, metrics: MethodMetrics,
                              auth: BearerToken | None, closing: Closing | None, places: AioCallLimit | None) -> Any:
        inner = handler.unary_stream or handler.stream_stream
        budget = self._budget
        decode = tolerant(handler.request_deserializer) or (lambda data: data)

        async def behaviour(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            if self._refused(places, closing, context, metrics):
                return
            # A unary request arrives as bytes, decoded once the call is admitted (as in _wrap_unary_response).
            request = _DecodedStream(request) if handler.stream_stream else request
            async with self._mapped(metrics, context, request if handler.stream_stream else None, auth, closing,
                                    places):
                # A unary request is counted for its whole answer; a stream's messages by the servicer's
                # RequestStream, each while it is answered (infersuite/services/runtime/streaming.py).
                size = budget.admit(request) if handler.unary_stream else 0
                try:
                    if handler.unary_stream:
                        request = decode(request)
                        refuse_undecodable(request)
                    result = inner(request, context)
                    if hasattr(result, "__aiter__"):
                        async for response in result:
                            yield response
                    else:
                        await result
                finally:
                    if handler.unary_stream:
                        budget.release(size)

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(behaviour, None, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(behaviour, tolerant(handler.request_deserializer),
                                                     handler.response_serializer)


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers are wrapped (once per method, then cached)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrapper: Wrapper):
        self._inner, self._wrapper = inner, wrapper
        self._cache: dict[str, Any] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method in self._cache:
            return self._cache[method]
        wrapped = self._wrapper.wrap(method, self._inner.service(handler_call_details))
        if wrapped is not None and len(self._cache) < 1024:  # unknown method names are not kept
            self._cache[method] = wrapped
        return wrapped


class HandlerRegistry(Protocol):
    """Where a service registers its gRPC handlers (what generated `add_*Servicer_to_server` call)."""

    def add_generic_rpc_handlers(self, handlers: Any) -> None: ...

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None: ...


class Wrapper(Protocol):
    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler | None) -> Any: ...


class RegisteringServer:
    """What `add_*Servicer_to_server` functions are given: registers on the real server (grpc.aio's,
    or the synchronous transport), every handler wrapped by `wrapper`."""

    def __init__(self, server: Any, wrapper: Wrapper):
        self._server, self._wrapper = server, wrapper

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGeneric(h, self._wrapper) for h in handlers])

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service_name, {
            name: self._wrapper.wrap(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()})
