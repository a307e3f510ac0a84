"""Streams of independent requests: concurrency bound, per-request errors, undecodable messages (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from infersuite.services.runtime import InvalidArgument, ResourceExhausted
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.streaming import RequestStream


class Requests:
    """A client stream: yields the given items (an exception instance is raised in its place, as
    the interceptor does for an undecodable message) and counts how many were read."""

    def __init__(self, items: list[object]):
        self.items, self.read = list(items), 0

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> object:
        if self.read == len(self.items):
            raise StopAsyncIteration
        item = self.items[self.read]
        self.read += 1
        if isinstance(item, BaseException):
            raise item
        return item


def _failed(request: object, code: grpc.StatusCode, message: str) -> tuple[object, str, str]:
    return request, code.name, message


def _stream(metrics: Metrics, max_inflight: int) -> RequestStream:
    return RequestStream(metrics, "svc", "Stream", max_inflight)


def _count(metrics: Metrics, code: str) -> float:
    value = metrics.registry.get_sample_value("infersuite_stream_requests_total",
                                              {"service": "svc", "method": "Stream", "code": code})
    return value or 0.0


async def test_requests_run_concurrently_up_to_the_bound_and_no_further_message_is_read() -> None:
    release, running, peak = asyncio.Event(), 0, 0

    async def answer(request: int) -> tuple[int, str, str]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return request, "OK", ""

    requests = Requests(list(range(20)))
    responses = _stream(Metrics(), 3).responses(requests, answer, _failed)
    first = asyncio.ensure_future(responses.__anext__())
    for _ in range(20):
        await asyncio.sleep(0)
    assert (running, requests.read) == (3, 3)  # three answering, the fourth message not read yet
    release.set()
    answered = [await first] + [r async for r in responses]
    assert sorted(r[0] for r in answered) == list(range(20)) and peak == 3


async def test_a_client_that_stops_reading_answers_is_not_read_further() -> None:
    async def answer(request: int) -> tuple[int, str, str]:
        return request, "OK", ""

    requests = Requests(list(range(50)))
    responses = _stream(Metrics(), 4).responses(requests, answer, _failed)
    await responses.__anext__()
    for _ in range(20):
        await asyncio.sleep(0)
    assert requests.read == 4  # its slot is freed when the consumer comes back for the next answer
    await responses.aclose()


async def test_each_request_failure_is_answered_and_the_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def answer(request: int) -> tuple[int, str, str]:
        if request == 1:
            raise InvalidArgument("request 1 is wrong")
        if request == 2:
            raise ResourceExhausted("queue full")
        if request == 3:
            raise RuntimeError("secret internals /some/path")
        return request, "OK", ""

    metrics = Metrics()
    undecodable = InvalidArgument("a message of the stream is not a valid X protobuf message")
    requests = Requests([0, 1, 2, undecodable, 3, 4])
    answered = [r async for r in _stream(metrics, 2).responses(requests, answer, _failed)]
    assert sorted(answered, key=str) == sorted([
        (0, "OK", ""), (1, "INVALID_ARGUMENT", "request 1 is wrong"), (2, "RESOURCE_EXHAUSTED", "queue full"),
        (None, "INVALID_ARGUMENT", "a message of the stream is not a valid X protobuf message"),
        (3, "INTERNAL", "Internal server error"), (4, "OK", "")], key=str)
    assert "secret internals" in caplog.text  # the detail goes to the log only
    assert [_count(metrics, c) for c in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL")] == [2, 2, 1, 1]


async def test_a_broken_stream_ends_with_its_error_and_cancels_unfinished_requests() -> None:
    cancelled = asyncio.Event()

    async def answer(request: int) -> tuple[int, str, str]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return request, "OK", ""

    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        async for _ in _stream(Metrics(), 4).responses(broken(), answer, _failed):
            pass
    await asyncio.wait_for(cancelled.wait(), 1)
