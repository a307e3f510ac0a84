"""The typed clients on their one base, against real servers on port 0 with tiny trained models:
streams are lazy (an input that waits for the first answer before producing its second item gets
that answer), every method's per-call timeout is that call's deadline (and None the client's), and
an exception of a stream's input reaches the reader instead of vanishing into a cancelled call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpc
import numpy as np
import pytest

from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.audio.client import AudioClient, AudioClientError, raw_audio
from infersuite.services.client import InferSuiteClientError
from infersuite.services.ctr import CtrService
from infersuite.services.ctr.client import CtrClient, CtrClientError, ScoreInput
from tests.fixtures import serving

pytestmark = pytest.mark.integration
T = TypeVar("T")
WAIT_S = 30.0  # how long an input waits for the first answer before it gives up (a failing test, not a hang)
STALL_S = 0.5  # how long `stalled` keeps the server from answering
SHORT_S = 0.1  # a deadline that expires during the stall, LONG_S one that outlasts it
LONG_S = 30.0


@pytest.fixture(scope="module")
async def ctr_address(tiny_ctr) -> AsyncIterator[str]:
    async with serving([CtrService()], tiny_ctr.repository, metrics_port=-1) as served:
        yield served.address


@pytest.fixture(scope="module")
async def audio_address(tiny_audio) -> AsyncIterator[str]:
    async with serving([AudioService(AudioSettings(max_duration_s=20.0))], tiny_audio.repository,
                       metrics_port=-1) as served:
        yield served.address


def ctr_input(tiny_ctr, seed: int) -> ScoreInput:
    rng = np.random.default_rng(seed)
    return ScoreInput(rng.integers(1, tiny_ctr.n_items + 1, 5).tolist(),
                      rng.integers(1, tiny_ctr.n_categories + 1, 5).tolist(),
                      rng.integers(1, tiny_ctr.n_items + 1, 3).tolist(),
                      rng.integers(1, tiny_ctr.n_categories + 1, 3).tolist())


async def stalled(call: Awaitable[T]) -> T:
    """Starts the call, then blocks the event loop for STALL_S: the in-process server runs on this loop,
    so it cannot answer before then, while the client's deadline runs in gRPC's own threads. A deadline
    shorter than STALL_S expires whatever the machine's speed; a longer one does not."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)  # the call goes out
    time.sleep(STALL_S)
    return await task


def tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.2 * np.sin(2 * np.pi * 330.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t))).astype(np.float32)


async def test_ctr_stream_sends_the_first_request_before_the_input_ends(ctr_address, tiny_ctr) -> None:
    inputs = [ctr_input(tiny_ctr, seed) for seed in range(3)]
    first_answer, events = asyncio.Event(), []

    async def waits_for_the_first_answer() -> AsyncIterator[tuple[str, ScoreInput]]:
        yield "r0", inputs[0]
        await asyncio.wait_for(first_answer.wait(), WAIT_S)  # an eager client never gets here an answer
        events.append("input goes on")
        for index in (1, 2):
            yield f"r{index}", inputs[index]

    async with CtrClient(ctr_address) as ctr:
        answers = {}
        async for answer in ctr.score_stream(waits_for_the_first_answer()):
            events.append(f"answer {answer.request_id}")
            answers[answer.request_id] = answer
            first_answer.set()
        unary = [await ctr.score(x.history_item_ids, x.history_category_ids, x.candidate_item_ids,
                                 x.candidate_category_ids) for x in inputs]
    assert events.index("answer r0") < events.index("input goes on") < events.index("answer r1")
    assert sorted(answers) == ["r0", "r1", "r2"] and all(a.error is None for a in answers.values())
    for index, scores in enumerate(unary):
        np.testing.assert_allclose(answers[f"r{index}"].scores.click_probabilities, scores.click_probabilities,
                                   atol=1e-6)


async def test_audio_stream_sends_audio_before_the_input_ends(audio_address) -> None:
    rate, audio = 32000, tone(32000, 3.2)
    halves = np.split(audio, [len(audio) // 2])
    first_answer, events = asyncio.Event(), []

    async def microphone() -> AsyncIterator[np.ndarray]:
        yield halves[0]
        events.append("input waits")
        await asyncio.wait_for(first_answer.wait(), WAIT_S)
        events.append("input goes on")
        yield halves[1]

    async with AudioClient(audio_address) as client:
        replies = []
        async for reply in client.stream_timestamps(microphone(), rate, "bow", hop_ms=50.0):
            replies.append(reply)
            if len(reply.timestamps_ms):
                events.append("embeddings")
                first_answer.set()
        unary = await client.embed_timestamps(raw_audio(audio, rate), "bow", hop_ms=50.0)
    assert events.index("input waits") < events.index("embeddings") < events.index("input goes on")
    np.testing.assert_array_equal(np.concatenate([r.timestamps_ms for r in replies]), unary.timestamps_ms)
    np.testing.assert_allclose(np.concatenate([r.embeddings for r in replies if len(r.timestamps_ms)]),
                               unary.embeddings, atol=1e-5)


async def test_ctr_per_call_timeout_overrides_the_client_default_both_ways(ctr_address, tiny_ctr) -> None:
    x = ctr_input(tiny_ctr, 7)
    args = (x.history_item_ids, x.history_category_ids, x.candidate_item_ids, x.candidate_category_ids)
    async with CtrClient(ctr_address, timeout_s=SHORT_S) as hurried, CtrClient(ctr_address) as patient:
        with pytest.raises(CtrClientError) as err:
            await stalled(hurried.score(*args))  # None: the client's default
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len((await stalled(hurried.score(*args, timeout_s=LONG_S))).click_probabilities) == 3
        with pytest.raises(InferSuiteClientError) as err:
            await stalled(patient.score(*args, timeout_s=SHORT_S))
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(ValueError, match="timeout_s must be"):
            await patient.score(*args, timeout_s=0)
        assert len((await stalled(patient.score(*args))).click_probabilities) == 3  # default 5 s


async def test_audio_methods_take_a_per_call_timeout(audio_address) -> None:
    clip = raw_audio(tone(16000, 1.0), 16000)
    async with AudioClient(audio_address) as client:
        for call in (lambda t: client.embed_scene(clip, "bow", timeout_s=t),
                     lambda t: client.embed_timestamps(clip, "bow", 50.0, timeout_s=t)):
            with pytest.raises(AudioClientError) as err:
                await stalled(call(SHORT_S))
            assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(ValueError, match="timeout_s must be"):
                await call(-1.0)
            await stalled(call(LONG_S))
        assert (await client.embed_scene(clip, "bow")).duration_s == pytest.approx(1.0)


async def test_a_stream_timeout_bounds_a_stream_whose_input_stalls(ctr_address, tiny_ctr) -> None:
    async def stalls() -> AsyncIterator[tuple[str, ScoreInput]]:
        yield "r0", ctr_input(tiny_ctr, 1)
        await asyncio.Event().wait()  # the rest never comes
        yield "r1", ctr_input(tiny_ctr, 2)

    async def read_all(ctr: CtrClient, timeout_s: float | None) -> list[str]:
        return [answer.request_id async for answer in ctr.score_stream(stalls(), timeout_s=timeout_s)]

    async with CtrClient(ctr_address, stream_timeout_s=0.5) as ctr:
        for timeout_s in (None, 0.5):  # the client's stream default, then the call's own
            with pytest.raises(CtrClientError) as err:
                await asyncio.wait_for(read_all(ctr, timeout_s), WAIT_S)
            assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_an_exception_of_the_stream_input_reaches_the_reader(ctr_address, tiny_ctr) -> None:
    async def unplugged() -> AsyncIterator[tuple[str, ScoreInput]]:
        yield "r0", ctr_input(tiny_ctr, 3)
        raise ConnectionResetError("sensor unplugged")

    async with CtrClient(ctr_address) as ctr:
        with pytest.raises(ConnectionResetError, match="sensor unplugged"):
            _ = [answer async for answer in ctr.score_stream(unplugged())]
        answers = [a async for a in ctr.score_stream([("after", ctr_input(tiny_ctr, 4))])]
    assert [a.request_id for a in answers] == ["after"] and answers[0].error is None
