"""The budget of request bytes in flight on a real server: a request that would take the bytes being
answered past INFERSUITE_MAX_INFLIGHT_BYTES is refused at once with RESOURCE_EXHAUSTED and
grpc-retry-pushback-ms (counted, its handler never run), the same request is admitted once the first
has been answered, and the gauge returns to 0."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import EchoService, serving

pytestmark = pytest.mark.integration


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_request_past_the_byte_budget_is_refused_with_pushback_then_admitted() -> None:
    async with serving([EchoService()], max_inflight_bytes=150) as served:
        async with grpc.aio.insecure_channel(served.address) as channel:
            sleep = channel.unary_unary("/infersuite.test.Echo/Sleep")
            slow = asyncio.ensure_future(sleep(b"1.0".ljust(100), timeout=30))  # 100 bytes for a second
            for _ in range(1000):  # until the first is being answered (not a timing assert: 10 s at most)
                if _samples(served.metrics_url)[("infersuite_inflight_request_bytes", ())] == 100:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the first request was never counted in flight")
            quick = b"0".ljust(100)  # 100 more: 200 > 150
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sleep(quick, timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "this 100-byte request would exceed its budget of 150" in (refused.value.details() or "")
            assert dict(refused.value.trailing_metadata())["grpc-retry-pushback-ms"] == "50"
            assert not slow.done()
            assert await slow == b"done"
            assert await sleep(quick, timeout=30) == b"done"  # the first answered: room again
        samples = _samples(served.metrics_url)
    assert samples[("infersuite_inflight_request_bytes", ())] == 0
    assert samples[("infersuite_refused_calls_total", (("reason", "inflight_bytes"),))] == 1
    assert samples[("infersuite_requests_total", (("code", "RESOURCE_EXHAUSTED"), ("method", "Sleep"),
                                                  ("service", "infersuite.test.Echo")))] == 1
