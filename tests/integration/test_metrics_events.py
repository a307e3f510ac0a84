"""Metrics that show every event (issue 14): series at 0 before the first event, calls gRPC would
refuse unseen counted, deadlines counted as the client saw them, process_* metrics, and a metrics
port that serves /metrics only."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import grpc
import pytest

from infersuite.services.runtime import RuntimeSettings, build_server
from tests.fixtures import EchoService
from tests.reliability.load import scrape

pytestmark = pytest.mark.integration
ECHO = "infersuite.test.Echo"


@pytest.fixture
async def echo():
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1",
                                                      metrics_host="127.0.0.1"), [EchoService()])
    await server.start()
    await server.wait_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel, f"http://127.0.0.1:{server.metrics_port}"
    await channel.close()
    await server.stop(0)


def _value(url: str, name: str, **labels: str) -> float | None:
    """The sample's value, or None when the series does not exist."""
    return scrape(url + "/metrics").get((name, tuple(sorted(labels.items()))))


async def test_request_series_exist_at_zero_before_their_first_event(echo) -> None:
    _, _, url = echo
    for code in ("OK", "INVALID_ARGUMENT", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
        for service, method in [("inference.GRPCInferenceService", "ModelInfer"), ("grpc.health.v1.Health", "Check")]:
            assert _value(url, "infersuite_requests_total", service=service, method=method, code=code) == 0.0
    assert _value(url, "infersuite_refused_calls_total", reason="unknown_method") == 0.0
    assert _value(url, "process_resident_memory_bytes") > 0
    assert (cpu_seconds := _value(url, "process_cpu_seconds_total")) is not None and cpu_seconds > 0


async def test_unknown_methods_are_answered_and_counted(echo) -> None:
    _, channel, url = echo
    for method in ("/infersuite.test.Echo/Nope", "/no.such.Service/Call"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary(method)(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a stream that never half-closes is answered too
        call = channel.stream_stream("/no.such.Service/Stream")(timeout=5)
        await call.read()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _value(url, "infersuite_refused_calls_total", reason="unknown_method") == 3


async def test_deadlines_and_cancellations_are_counted_as_the_client_saw_them(echo) -> None:
    _, channel, url = echo
    sleep = channel.unary_unary(f"/{ECHO}/Sleep")
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sleep(b"2", timeout=0.1)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    call = sleep(b"2", timeout=10)
    await asyncio.sleep(0.2)
    call.cancel()
    await asyncio.sleep(0.3)  # the server sees the cancellation
    assert _value(url, "infersuite_requests_total", service=ECHO, method="Sleep", code="DEADLINE_EXCEEDED") == 3
    assert _value(url, "infersuite_requests_total", service=ECHO, method="Sleep", code="CANCELLED") == 1


@pytest.mark.parametrize("path", ["/", "/healthz", "/v2/health/ready", "/../../etc/passwd", "/metrics/x"])
async def test_the_metrics_port_serves_metrics_only(echo, path) -> None:
    _, _, url = echo
    with pytest.raises(urllib.error.HTTPError) as err:
        await asyncio.to_thread(urllib.request.urlopen, url + path, timeout=5)
    assert err.value.code == 404
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        assert response.status == 200 and b"infersuite_requests_total" in response.read()
