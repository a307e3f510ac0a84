"""The audio handler's rules against a fake embedder (no sockets, no onnxruntime): windows go
in batches, streaming equals the unary call, limits are enforced before any model runs."""

from collections.abc import Mapping

import numpy as np
import pytest

from infersuite.services.audio.handler import AudioHandler, AudioInput, EmbedQuery, StreamOptions
from infersuite.services.audio.settings import AudioSettings
from infersuite.services.runtime import InvalidArgument, Runtime, RuntimeSettings
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from tests.fixtures import FakeModel

WINDOW = 3200  # a 0.1 s window keeps the fake cheap; the handler reads it from meta.json


def _statistics(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A deterministic 'embedding' that sees every sample position of the window."""
    w = inputs["waveform"].astype(np.float64)
    ramp = np.linspace(-1, 1, w.shape[1])
    features = np.stack([w.mean(1), w.std(1), (w * ramp).mean(1), np.abs(w).max(1)], axis=1)
    return {"embedding": features.astype(np.float32)}


@pytest.fixture
async def handler_and_model(tmp_path):
    metrics = Metrics()
    manager = ModelManager(ModelRepository(tmp_path), backend=None, metrics=metrics)  # type: ignore[arg-type]
    model = FakeModel("audio-passt-fp32", _statistics, {"window_samples": WINDOW, "sample_rate": 32000})
    manager.attach(model, BatchingPolicy(max_batch_size=64, max_queue_delay_s=0.0))
    manager.attach(FakeModel("audio-bow-fp32", _statistics, {"window_samples": WINDOW}),
                   BatchingPolicy(max_batch_size=64, max_queue_delay_s=0.0))
    settings = AudioSettings(batch_windows=8, max_duration_s=5.0, max_timestamps=300)
    runtime = Runtime(RuntimeSettings(), manager, metrics)
    handler = AudioHandler(settings, runtime)
    runtime.initialize("audio", ["audio-passt-fp32", "audio-bow-fp32"])
    yield handler, model
    await manager.close()


def _raw(samples: np.ndarray, rate: int) -> AudioInput:
    return AudioInput(raw=samples.astype("<f4").tobytes(), sample_rate=rate, channels=1)


def _noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)


async def test_scene_windows_run_in_batches_and_are_averaged(handler_and_model) -> None:
    handler, model = handler_and_model
    audio = _noise(2.05, 32000)  # 20 full windows + one flush with the end
    result = await handler.embed_scene(EmbedQuery(_raw(audio, 32000)))
    sizes = [call["waveform"].shape[0] for call in model.calls]
    assert sizes == [8, 8, 5]  # batched, never one window at a time
    starts = [*range(0, 20 * WINDOW, WINDOW), audio.size - WINDOW]
    want = _statistics({"waveform": np.stack([audio[s:s + WINDOW] for s in starts])})["embedding"].mean(0)
    np.testing.assert_allclose(result.embedding, want, atol=1e-6)
    assert result.duration_s == pytest.approx(2.05) and result.model == "audio-passt-fp32"


@pytest.mark.parametrize("timestamp_window_ms", [500.0, 40.0])  # all of the fake's 100 ms window, or part
@pytest.mark.parametrize("rate", [32000, 44100, 16000])
async def test_streaming_equals_unary_timestamps(handler_and_model, rate, timestamp_window_ms) -> None:
    handler, _ = handler_and_model
    handler.settings.timestamp_window_ms = timestamp_window_ms
    audio = _noise(1.3, rate, seed=rate)
    unary = await handler.embed_timestamps(EmbedQuery(_raw(audio, rate), hop_ms=25.0))
    stream = handler.open_stream(StreamOptions(rate, 1, "", 25.0))
    rng, parts, stamps, start = np.random.default_rng(1), [], [], 0
    while start < audio.size:
        size = int(rng.integers(1, 9000))
        embeddings, times = await stream.push(audio[start:start + size].astype("<f4").tobytes())
        parts.extend(embeddings), stamps.extend(times)
        start += size
    embeddings, times = await stream.finish()
    parts.extend(embeddings), stamps.extend(times)
    assert len(unary.timestamps_ms) == int(1300 / 25) + 1
    np.testing.assert_array_equal(np.array(stamps), unary.timestamps_ms)
    np.testing.assert_allclose(np.array(parts), unary.embeddings, atol=1e-6)


async def test_timestamp_embedding_is_centred_on_its_timestamp(handler_and_model) -> None:
    handler, _ = handler_and_model
    audio = np.zeros(32000, np.float32)
    audio[16000] = 1.0  # an impulse at 500 ms
    result = await handler.embed_timestamps(EmbedQuery(_raw(audio, 32000), hop_ms=10.0))
    ramp_feature = result.embeddings[:, 2]  # (w * ramp).mean: 0 when the impulse is at the window's centre
    peak = result.embeddings[:, 3]
    seen = result.timestamps_ms[peak > 0]
    assert seen.min() == pytest.approx(450, abs=10) and seen.max() == pytest.approx(540, abs=10)
    assert abs(ramp_feature[result.timestamps_ms == 500.0][0]) < 1e-3


async def test_limits_are_enforced_before_the_model_runs(handler_and_model) -> None:
    handler, model = handler_and_model
    cases = {
        "unknown embedder": (EmbedQuery(_raw(_noise(0.1, 32000), 32000), embedder="vggish"),
                             "embedder 'vggish' is unknown: use one of passt, bow"),
        "hop too small": (EmbedQuery(_raw(_noise(0.1, 32000), 32000), hop_ms=1.0), "hop_ms=1 must be at least 10"),
        "too many timestamps": (EmbedQuery(_raw(_noise(4.0, 8000), 8000), hop_ms=10.0),
                                "gives 401 timestamps for this audio, more than the maximum of 300"),
        "no audio": (EmbedQuery(AudioInput()), "audio is empty"),
    }
    for query, message in cases.values():
        with pytest.raises(InvalidArgument, match=message):
            await handler.embed_timestamps(query)
    assert model.calls == []


async def test_a_stream_past_the_maximum_duration_is_rejected(handler_and_model) -> None:
    handler, _ = handler_and_model
    stream = handler.open_stream(StreamOptions(8000))
    await stream.push(_noise(4.0, 8000).tobytes())
    with pytest.raises(InvalidArgument, match="maximum duration of 5 s"):
        await stream.push(_noise(1.5, 8000).tobytes())
    with pytest.raises(InvalidArgument, match="sample rate 3 Hz"):
        handler.open_stream(StreamOptions(3))
    with pytest.raises(InvalidArgument, match="zero-length"):
        await handler.open_stream(StreamOptions(8000)).finish()
