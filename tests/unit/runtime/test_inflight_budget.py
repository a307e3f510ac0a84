"""The process's budget of request bytes being answered (infersuite/services/runtime/inflight_bytes.py), no
sockets: admitted while the total fits, a lone request always, refusals RESOURCE_EXHAUSTED with a
retry hint naming the numbers, the gauge back at 0 after every release."""

from __future__ import annotations

import pytest

from infersuite.protos import ctr_pb2
from infersuite.services.runtime.errors import RETRY_PUSHBACK_KEY, ResourceExhausted
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.metrics import Metrics


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_requests_are_admitted_while_their_bytes_fit_and_refused_with_a_hint_past_the_budget() -> None:
    metrics = Metrics()
    budget = InflightBytes.on(metrics, limit=1000)
    first = budget.admit(b"x" * 600)
    assert first == 600 and _value(metrics, "infersuite_inflight_request_bytes") == 600
    request = ctr_pb2.ScoreRequest(candidate_item_ids=list(range(1000, 1300)))  # 2 bytes per id on the wire
    with pytest.raises(ResourceExhausted) as refused:
        budget.admit(request)
    assert (f"answering 600 bytes of requests, and this {request.ByteSize()}-byte request would exceed its "
            "budget of 1000 (INFERSUITE_MAX_INFLIGHT_BYTES)") in refused.value.message
    assert dict(refused.value.trailing_metadata)[RETRY_PUSHBACK_KEY] == "50"
    assert _value(metrics, "infersuite_refused_calls_total", reason="inflight_bytes") == 1
    small = budget.admit(b"y" * 400)  # exactly at the budget: admitted
    budget.release(first)
    budget.release(small)
    assert (budget.bytes, budget.requests, _value(metrics, "infersuite_inflight_request_bytes")) == (0, 0, 0)


def test_a_lone_request_is_admitted_whatever_its_size_and_zero_means_no_budget() -> None:
    metrics = Metrics()
    budget = InflightBytes.on(metrics, limit=10)
    size = budget.admit(b"z" * 5000)  # nothing else in flight: never refused forever
    with pytest.raises(ResourceExhausted):
        budget.admit(b"a")
    budget.release(size)
    unlimited = InflightBytes.on(Metrics())  # no budget: admitted without even sizing the request
    assert [unlimited.admit(object()) for _ in range(100)] == [0] * 100 and unlimited.bytes == 0


async def test_a_stream_message_over_the_budget_gets_its_own_refusal_and_the_stream_goes_on() -> None:
    import asyncio

    import grpc

    from infersuite.services.runtime.streaming import RequestStream

    metrics, release = Metrics(), asyncio.Event()
    stream = RequestStream(metrics, "svc", "Stream", max_inflight=8, budget=InflightBytes.on(metrics, limit=150))

    async def answer(request: bytes) -> tuple[bytes, str]:
        await release.wait()
        return request, "OK"

    def failed(request: bytes | None, code: grpc.StatusCode, message: str) -> tuple[bytes | None, str]:
        return request, code.name

    async def requests():
        yield b"a" * 100
        yield b"b" * 100  # 200 bytes in flight would exceed 150: refused while the first is answered
        await asyncio.sleep(0)
        release.set()

    answers = [a async for a in stream.responses(requests(), answer, failed)]
    assert sorted((r[:1], code) for r, code in answers) == [(b"a", "OK"), (b"b", "RESOURCE_EXHAUSTED")]
    assert _value(metrics, "infersuite_inflight_request_bytes") == 0
