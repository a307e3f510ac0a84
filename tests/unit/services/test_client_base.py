"""The one client base under the typed clients (infersuite/services/client.py), no sockets: every failed call is
one exception type carrying the status code, raised `from None`; every method takes a per-call
timeout, None is the client's default and 0/negative/NaN is a ValueError before anything is sent;
the audio stream's requests are made one input chunk at a time."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from infersuite.protos import audio_pb2, common_pb2, ctr_pb2, segmentation_pb2
from infersuite.services.audio.client import AudioClient, AudioClientError, _stream_requests, raw_audio, wav_audio
from infersuite.services.channel import ChannelSecurity
from infersuite.services.client import (
    AsyncClient,
    BlockingClient,
    ClientClosedError,
    InferSuiteClientError,
    RetryPolicy,
    checked_timeout,
    message_options,
)
from infersuite.services.ctr.client import CtrClient, CtrClientError, ScoreInput, _streamed
from infersuite.services.segmentation.client import SegmentationClient, SegmentationClientError
from infersuite.services.splitcompute.client import SplitComputeClient, SplitComputeClientError
from infersuite.services.splitcompute.edge import EdgeDevice

BAD_TIMEOUTS = [0, 0.0, -1, -0.001, math.nan, math.inf, "5", True]


def aio_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class BlockingRpcError(grpc.RpcError, grpc.Call):
    """What the blocking API raises (grpc._channel._InactiveRpcError is an RpcError and a Call)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any: ...
    def trailing_metadata(self) -> Any: ...
    def is_active(self) -> bool: return False
    def time_remaining(self) -> float | None: return None
    def cancel(self) -> bool: return False
    def add_callback(self, callback: Any) -> bool: return False


class FakeCall:
    """A finished stream call: no answers."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._answers()

    async def _answers(self) -> AsyncIterator[Any]:
        return
        yield

    def cancel(self) -> bool:
        return False


# An empty answer of each method's type decodes, but for Segment: its default mask encoding is PNG.
ANSWERS = {"/infersuite.segmentation.v1.SegmentationService/Segment":
           segmentation_pb2.SegmentResponse(mask_encoding=segmentation_pb2.MASK_ENCODING_RAW).SerializeToString()}


class FakeChannel:
    """Records every call the stubs make: (method path, timeout, metadata); unary calls answer an empty
    message of the method's response type (ANSWERS), or raise `error`."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.calls: list[tuple[str, float | None, tuple]] = []
        self.waits: list[bool] = []  # each call's wait_for_ready

    def _unary(self, path: str, response_deserializer: Callable[[bytes], Any], **_: Any) -> Callable[..., Any]:
        async def call(request: Any, timeout: float | None = None, metadata: tuple = (),
                       wait_for_ready: bool = False) -> Any:
            self.calls.append((path, timeout, metadata))
            self.waits.append(wait_for_ready)
            if self.error is not None:
                raise self.error
            return response_deserializer(ANSWERS.get(path, b""))
        return call

    def _stream(self, path: str, **_: Any) -> Callable[..., Any]:
        def call(requests: Any, timeout: float | None = None, metadata: tuple = (),
                 wait_for_ready: bool = False) -> FakeCall:
            self.calls.append((path, timeout, metadata))
            self.waits.append(wait_for_ready)
            return FakeCall()
        return call

    unary_unary = _unary
    stream_stream = _stream

    def unary_stream(self, path: str, **_: Any) -> None:
        return None

    def stream_unary(self, path: str, **_: Any) -> None:
        return None

    async def close(self) -> None:
        return None


def unary_calls(client_type: type[AsyncClient]) -> list[Callable[[Any, float | None], Any]]:
    """Every unary method of a typed client, called with a per-call timeout."""
    return {
        CtrClient: [lambda c, t: c.score([1], [1], [2], [1], timeout_s=t)],
        SegmentationClient: [lambda c, t: c.segment(np.zeros((2, 2), np.uint8), raw_mask=True, timeout_s=t)],
        SplitComputeClient: [lambda c, t: c.classify(b"x", timeout_s=t), lambda c, t: c.get_codec(timeout_s=t)],
        AudioClient: [lambda c, t: c.embed_scene(wav_audio(b"RIFF"), timeout_s=t),
                      lambda c, t: c.embed_timestamps(raw_audio(np.zeros(4), 16000), "bow", 10.0, timeout_s=t)],
    }[client_type]


CLIENTS = [(CtrClient, CtrClientError, 5.0), (SegmentationClient, SegmentationClientError, 10.0),
           (SplitComputeClient, SplitComputeClientError, 5.0), (AudioClient, AudioClientError, 30.0)]


@pytest.mark.parametrize(("client_type", "alias", "_"), CLIENTS)
async def test_every_failed_call_is_one_exception_type_with_the_status_code(client_type, alias, _) -> None:
    channel = FakeChannel(aio_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue of din-fp32 is full"))
    client = client_type("unused:1", channel=channel)
    for call in unary_calls(client_type):
        with pytest.raises(InferSuiteClientError) as err:
            await call(client, None)
        assert type(err.value) is alias and issubclass(alias, InferSuiteClientError)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.message == "queue of din-fp32 is full"
        assert str(err.value) == "RESOURCE_EXHAUSTED: queue of din-fp32 is full"
        assert err.value.__cause__ is None and err.value.__suppress_context__  # `raise ... from None`
    assert len(channel.calls) == len(unary_calls(client_type))


def test_the_blocking_base_converts_the_blocking_error_and_edge_device_raises_its_old_name() -> None:
    client = BlockingClient("unused:1", channel=grpc.insecure_channel("unused:1"))

    def fails(request: Any, timeout: float | None, metadata: tuple, wait_for_ready: bool) -> None:
        raise BlockingRpcError(grpc.StatusCode.UNAVAILABLE, "splitcompute-decoder not ready")

    with pytest.raises(InferSuiteClientError) as err:
        client._unary(fails, b"", None)
    assert (err.value.code, err.value.message) == (grpc.StatusCode.UNAVAILABLE, "splitcompute-decoder not ready")
    assert err.value.__suppress_context__
    assert issubclass(EdgeDevice, BlockingClient) and EdgeDevice.error is SplitComputeClientError
    client.close()


def test_a_numeric_status_in_a_stream_answer_becomes_the_same_error() -> None:
    answer = ctr_pb2.ScoreStreamResponse(request_id="r7", error=common_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="history_item_ids[0] = 0 is padding"))
    streamed = _streamed(answer)
    assert isinstance(streamed.error, CtrClientError) and streamed.scores is None
    assert streamed.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert InferSuiteClientError.from_status(4242, "?").code == grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize("bad", BAD_TIMEOUTS)
def test_a_timeout_that_is_not_a_positive_number_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="timeout_s must be"):
        checked_timeout(bad)
    with pytest.raises(ValueError, match="timeout_s must be"):
        CtrClient("unused:1", channel=FakeChannel(), timeout_s=bad)
    with pytest.raises(ValueError, match="stream_timeout_s must be"):
        AudioClient("unused:1", channel=FakeChannel(), stream_timeout_s=bad)


def test_the_blocking_base_takes_the_same_per_call_timeouts() -> None:
    client = BlockingClient("unused:1", channel=grpc.insecure_channel("unused:1"), timeout_s=4.0)
    deadlines: list[float | None] = []

    def answers(request: Any, timeout: float | None, metadata: tuple, wait_for_ready: bool) -> str:
        deadlines.append(timeout)
        return "ok"

    assert [client._unary(answers, b"", t) for t in (None, 0.5)] == ["ok", "ok"] and deadlines == [4.0, 0.5]
    for bad in BAD_TIMEOUTS:
        with pytest.raises(ValueError, match="timeout_s must be"):
            client._unary(answers, b"", bad)
    assert deadlines == [4.0, 0.5]
    client.close()


@pytest.mark.parametrize(("client_type", "_alias", "_"), CLIENTS)
@pytest.mark.parametrize("bad", BAD_TIMEOUTS)
async def test_a_bad_per_call_timeout_fails_before_anything_is_sent(client_type, _alias, _, bad) -> None:
    channel = FakeChannel()
    client = client_type("unused:1", channel=channel)
    for call in unary_calls(client_type):
        with pytest.raises(ValueError, match="timeout_s must be"):
            await call(client, bad)
    assert channel.calls == []


@pytest.mark.parametrize("bad", [0, -2.0, math.nan])
def test_a_bad_stream_timeout_fails_at_the_call_not_at_the_first_answer(bad) -> None:
    channel = FakeChannel()
    ctr, audio = CtrClient("unused:1", channel=channel), AudioClient("unused:1", channel=channel)
    with pytest.raises(ValueError, match="timeout_s must be"):
        ctr.score_stream([("r0", ScoreInput([1], [1], [2], [1]))], timeout_s=bad)  # not iterated
    with pytest.raises(ValueError, match="timeout_s must be"):
        audio.stream_timestamps([np.zeros(16, np.float32)], 16000, timeout_s=bad)
    assert channel.calls == []


@pytest.mark.parametrize(("client_type", "_alias", "default_s"), CLIENTS)
async def test_none_is_the_client_default_and_a_number_is_that_call_s_deadline(client_type, _alias, default_s) -> None:
    for configured, per_call, expected in ((None, None, default_s), (2.5, None, 2.5), (2.5, np.float32(0.25), 0.25)):
        channel = FakeChannel()
        options = {} if configured is None else {"timeout_s": configured}
        client = client_type("unused:1", channel=channel, security=ChannelSecurity(token="s3cret"), **options)
        for call in unary_calls(client_type):
            await call(client, per_call)
        assert [timeout for _, timeout, _ in channel.calls] == [expected] * len(unary_calls(client_type))
        assert all(("authorization", "Bearer s3cret") in metadata for _, _, metadata in channel.calls)
    unbounded = client_type("unused:1", channel=FakeChannel(), timeout_s=None)
    assert unbounded.timeout_s is None


async def test_streams_default_to_the_client_stream_timeout_which_is_no_deadline_unless_set() -> None:
    channel = FakeChannel()
    ctr = CtrClient("unused:1", channel=channel)
    audio = AudioClient("unused:1", channel=channel, stream_timeout_s=60)
    _ = [a async for a in ctr.score_stream([])]
    _ = [a async for a in ctr.score_stream([], timeout_s=3)]
    _ = [a async for a in audio.stream_timestamps([], 16000)]
    _ = [a async for a in audio.stream_timestamps([], 16000, timeout_s=1.5)]
    assert [timeout for _, timeout, _ in channel.calls] == [None, 3.0, 60.0, 1.5]


async def test_audio_stream_requests_are_made_one_chunk_at_a_time() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[np.ndarray]:
        for index in range(3):
            pulled.append(index)
            yield np.full((8, 2), index, np.float32)

    requests = _stream_requests(chunks(), 44100, "bow", 20.0)
    config = await anext(requests)
    assert config.config == audio_pb2.StreamConfig(sample_rate=44100, channels=2, embedder="bow", hop_ms=20.0)
    assert pulled == [0]  # the config needed the first chunk's channel count, nothing more
    first = await anext(requests)
    assert np.frombuffer(first.samples_f32le, "<f4").tolist() == [0.0] * 16 and pulled == [0]
    assert len([r async for r in requests]) == 2 and pulled == [0, 1, 2]


async def test_a_chunk_with_another_channel_count_is_refused_by_its_index() -> None:
    requests = _stream_requests([np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros((4, 2), np.float32)],
                                16000, "", 0.0)
    with pytest.raises(ValueError, match="chunk 2 has 2 channels; the stream's first chunk had 1"):
        _ = [r async for r in requests]



@pytest.mark.parametrize(("client_type", "alias", "_"), CLIENTS)
async def test_wait_for_ready_reaches_every_call_and_a_closed_client_raises_its_error(client_type, alias, _) -> None:
    channel = FakeChannel()
    client = client_type("unused:1", channel=channel, wait_for_ready=True)
    for call in unary_calls(client_type):
        await call(client, None)
    assert channel.waits == [True] * len(unary_calls(client_type))
    assert client_type("unused:1", channel=FakeChannel())._call_options(1.0)["wait_for_ready"] is False
    await client.close()
    for call in unary_calls(client_type):
        with pytest.raises(ClientClosedError, match="FAILED_PRECONDITION: the client is closed") as err:
            await call(client, None)
        assert isinstance(err.value, InferSuiteClientError)
    assert len(channel.calls) == len(unary_calls(client_type))  # nothing sent after close


async def test_a_stream_on_a_closed_client_is_refused_at_the_call() -> None:
    ctr, audio = CtrClient("unused:1", channel=FakeChannel()), AudioClient("unused:1", channel=FakeChannel())
    await ctr.close()
    await audio.close()
    with pytest.raises(ClientClosedError):
        ctr.score_stream([])
    with pytest.raises(ClientClosedError):
        audio.stream_timestamps([], 16000)
    blocking = BlockingClient("unused:1", channel=grpc.insecure_channel("unused:1"))
    blocking.close()
    with pytest.raises(ClientClosedError):
        blocking._unary(lambda *a, **k: None, b"", None)


def test_a_retry_policy_becomes_grpc_s_service_config_and_bad_values_are_refused() -> None:
    config = json.loads(RetryPolicy().service_config())
    assert config["methodConfig"] == [{"name": [{}], "retryPolicy": {
        "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "2.0s", "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]
    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}
    options = dict(message_options(1024, (("grpc.primary_user_agent", "x"),), RetryPolicy(max_attempts=5)))
    assert options["grpc.enable_retries"] == 1 and '"maxAttempts": 5' in str(options["grpc.service_config"])
    assert "grpc.service_config" not in dict(message_options(1024))
    for bad in ({"max_attempts": 1}, {"max_attempts": 6}, {"initial_backoff_s": 0}, {"backoff_multiplier": math.nan},
                {"retryable_codes": ("UNAVAILABLE", "NOT_A_CODE")}, {"retryable_codes": ()},
                {"retryable_codes": ("OK",)}, {"throttle_max_tokens": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
