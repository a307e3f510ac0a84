"""Streams of independent requests (OIP ModelStreamInfer, ctr ScoreStream), answered concurrently.

As in Triton's gRPC stream, each message of the stream is one request and gets one response
that carries the request's id; a request that fails is answered with its error in that response
(its own status code and message) and the stream goes on. Requests of one stream run at once
through the same path as unary calls (`ModelManager.infer`), so the dynamic batcher combines
them with each other and with other clients' requests. Responses leave in completion order;
clients match them by id.

Bounded: at most `max_inflight` requests of a stream are being answered or waiting to be sent, and
each counts against the process's budget of request bytes (infersuite/services/runtime/inflight_bytes.py).
The next message is read only when one of them has been handed to gRPC, so a client that sends
faster than the server answers (or stops reading answers) is pushed back by HTTP/2 flow control
instead of queueing without limit. A message that is not a valid protobuf message of the
request type is answered with INVALID_ARGUMENT (no id: there was none to read) and the stream
goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import grpc

from infersuite.services.runtime.errors import InvalidArgument
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.status import error_status

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

# Builds the response that reports a failed request (None: the message could not be decoded).
Failed = Callable[[RequestT | None, grpc.StatusCode, str], ResponseT]


class _End:
    """Put on a stream's response queue when every request has been answered."""


class _Answering(Generic[RequestT, ResponseT]):
    """One stream in progress: reads requests while a slot is free, answers each in its own task."""

    def __init__(self, answer: Callable[[RequestT], Awaitable[ResponseT]], failed: Failed,
                 max_inflight: int, count: Callable[[grpc.StatusCode], None], budget: InflightBytes):
        self._answer, self._failed, self._count, self._budget = answer, failed, count, budget
        self.slots = asyncio.Semaphore(max_inflight)
        self.responses: asyncio.Queue[ResponseT | _End | BaseException] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()

    async def _one(self, request: RequestT) -> None:
        try:
            size = self._budget.admit(request)  # refused: this request's own RESOURCE_EXHAUSTED answer
            try:
                response = await self._answer(request)
            finally:
                self._budget.release(size)
            self._count(grpc.StatusCode.OK)
        except Exception as exc:  # the request's own error, answered in its response
            code, message = error_status(exc, "a stream request")
            self._count(code)
            response = self._failed(request, code, message)
        self.responses.put_nowait(response)

    async def read(self, requests: AsyncIterator[RequestT]) -> None:
        try:
            while True:
                await self.slots.acquire()  # released when a response has been sent
                try:
                    request = await requests.__anext__()
                except StopAsyncIteration:
                    break
                except InvalidArgument as exc:  # an undecodable message (runtime/handler_wrapper.py)
                    self._count(grpc.StatusCode.INVALID_ARGUMENT)
                    self.responses.put_nowait(self._failed(None, grpc.StatusCode.INVALID_ARGUMENT, exc.message))
                    continue
                task = asyncio.create_task(self._one(request))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.gather(*self.tasks)
            self.responses.put_nowait(_End())
        except Exception as exc:  # the stream itself broke (e.g. the client went away)
            self.responses.put_nowait(exc)

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class RequestStream:
    """Answers the requests of streaming RPCs of one method; counts each request's outcome."""

    def __init__(self, metrics: Metrics, service: str, method: str, max_inflight: int,
                 budget: InflightBytes | None = None):
        self._max_inflight = max_inflight
        self._budget = budget or InflightBytes.on(metrics)
        self._labels = (metrics.stream_requests, service, method)
        self._counters = {grpc.StatusCode.OK: metrics.stream_requests.labels(service, method, "OK")}  # a 0 series

    def _count(self, code: grpc.StatusCode) -> None:
        counter = self._counters.get(code)
        if counter is None:  # an error code's series appears with its first request
            family, service, method = self._labels
            counter = self._counters[code] = family.labels(service, method, code.name)
        counter.inc()

    async def responses(self, requests: AsyncIterator[RequestT],
                        answer: Callable[[RequestT], Awaitable[ResponseT]],
                        failed: Failed) -> AsyncIterator[ResponseT]:
        """Yields one response per request, in completion order, until the client ends the stream."""
        stream: _Answering[RequestT, ResponseT] = _Answering(answer, failed, self._max_inflight, self._count,
                                                             self._budget)
        reader = asyncio.create_task(stream.read(requests.__aiter__()))
        try:
            while not isinstance(item := await stream.responses.get(), _End):
                if isinstance(item, BaseException):
                    raise item
                yield item
                stream.slots.release()
        finally:
            reader.cancel()
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
