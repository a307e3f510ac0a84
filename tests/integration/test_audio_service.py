"""The audio service end to end: real server on port 0, real onnxruntime graphs of tiny trained
embedders, real gRPC channel."""

from __future__ import annotations

import io
import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import soundfile
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

import hear_infersuite as hear
from infersuite.protos import audio_pb2, audio_pb2_grpc
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.audio.client import AudioClient, AudioClientError, raw_audio, wav_audio
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SERVICE_NAME = "infersuite.audio.v1.AudioService"
EMBEDDERS = ("passt", "bow")


@pytest.fixture(scope="module")
async def audio_server(tiny_audio):
    async with serving([AudioService(AudioSettings(max_duration_s=20.0))], tiny_audio.repository) as served:
        yield served.server, served.port


@pytest.fixture
async def client(audio_server):
    _, port = audio_server
    async with AudioClient(f"127.0.0.1:{port}") as audio:
        yield audio


def band_limited(rate: int, seconds: float = 2.5) -> np.ndarray:
    """The same continuous signal at any rate: partials below 6 kHz, a 3 Hz AM, a click-free start."""
    t = np.arange(int(rate * seconds)) / rate
    partials = sum(np.sin(2 * np.pi * 220.0 * k * t + k) / k for k in range(1, 27))  # up to 5.7 kHz
    return (0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) * partials).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_24") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


async def test_health_reaches_serving(audio_server) -> None:
    _, port = audio_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("embedder", EMBEDDERS)
async def test_the_server_gives_the_hear_module_embeddings(client, tiny_audio, embedder) -> None:
    audio = band_limited(32000, 3.4)
    model = hear.load_model(str(tiny_audio.repository / f"audio-{embedder}-fp32"))
    scene = await client.embed_scene(raw_audio(audio, 32000), embedder)
    want_scene = hear.get_scene_embeddings(torch.from_numpy(audio[None]), model)[0].numpy()
    np.testing.assert_allclose(scene.embedding, want_scene, atol=1e-5)
    stamps = await client.embed_timestamps(raw_audio(audio, 32000), embedder, hop_ms=50.0)
    want, want_ms = hear.get_timestamp_embeddings(torch.from_numpy(audio[None]), model)
    np.testing.assert_array_equal(stamps.timestamps_ms, want_ms[0].numpy())
    np.testing.assert_allclose(stamps.embeddings, want[0].numpy(), atol=1e-5)
    assert scene.model == f"audio-{embedder}-fp32" and scene.embedding.shape == (model.scene_embedding_size,)
    assert stamps.timestamps_ms[0] == 0 and stamps.timestamps_ms[-1] == 3400.0


@pytest.mark.parametrize("embedder", EMBEDDERS)
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
async def test_other_rates_embed_like_the_32k_signal(client, embedder, rate) -> None:
    reference = await client.embed_scene(wav_audio(wav_bytes(band_limited(32000), 32000)), embedder)
    other = await client.embed_scene(wav_audio(wav_bytes(band_limited(rate), rate)), embedder)
    assert other.duration_s == pytest.approx(2.5, abs=1e-4)
    assert cosine(other.embedding, reference.embedding) > 0.99
    assert np.linalg.norm(other.embedding - reference.embedding) < 0.1 * np.linalg.norm(reference.embedding)
    ref_t = await client.embed_timestamps(wav_audio(wav_bytes(band_limited(32000), 32000)), embedder, 100.0)
    got_t = await client.embed_timestamps(wav_audio(wav_bytes(band_limited(rate), rate)), embedder, 100.0)
    np.testing.assert_array_equal(got_t.timestamps_ms, ref_t.timestamps_ms)
    assert np.median(cosine(got_t.embeddings, ref_t.embeddings)) > 0.98


@pytest.mark.parametrize("embedder", EMBEDDERS)
async def test_streaming_gives_the_unary_embeddings(client, embedder) -> None:
    rate = 44100
    stereo = np.stack([band_limited(rate, 3.2), np.random.default_rng(0).standard_normal(int(rate * 3.2))
                       .astype(np.float32) * 0.01], axis=1)
    unary = await client.embed_timestamps(raw_audio(stereo, rate), embedder, hop_ms=40.0)
    sizes = np.random.default_rng(1).integers(500, 20000, 40)
    chunks = [chunk for chunk in np.split(stereo, np.cumsum(sizes)) if len(chunk)]
    replies = [r async for r in client.stream_timestamps(chunks, rate, embedder, hop_ms=40.0)]
    assert len(replies) > 2  # embeddings came back while audio was still arriving
    streamed = np.concatenate([r.embeddings for r in replies if len(r.timestamps_ms)])
    np.testing.assert_array_equal(np.concatenate([r.timestamps_ms for r in replies]), unary.timestamps_ms)
    np.testing.assert_allclose(streamed, unary.embeddings, atol=1e-5)


def _edge_audio() -> dict[str, tuple[np.ndarray, int, str]]:
    """Audio at the edges of float32 -> (samples, rate, WAV subtype or "" for raw float32)."""
    t = np.arange(32000) / 32000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    return {
        "silence": (np.zeros(32000, np.float32), 32000, ""),
        "one sample": (np.full(1, 0.5, np.float32), 32000, ""),
        "tiny": (1e-30 * tone, 32000, ""),
        "huge": (1e20 * tone, 32000, ""),
        "denormal": (np.full(44100, 1e-44, np.float32), 44100, ""),
        "silence then tone, 16-bit WAV": (np.concatenate([np.zeros(64000, np.float32), 0.5 * tone]), 32000, "PCM_16"),
    }


def _edge_input(case: str) -> audio_pb2.Audio:
    samples, rate, subtype = _edge_audio()[case]
    return raw_audio(samples, rate) if not subtype else wav_audio(wav_bytes(samples, rate, subtype))


@pytest.mark.parametrize("embedder", EMBEDDERS)
@pytest.mark.parametrize("case", sorted(_edge_audio()))
async def test_edge_audio_embeds_to_finite_values_on_every_rpc(client, embedder, case) -> None:
    samples, rate, _ = _edge_audio()[case]
    scene = await client.embed_scene(_edge_input(case), embedder)
    stamps = await client.embed_timestamps(_edge_input(case), embedder, hop_ms=100.0)
    replies = [r async for r in client.stream_timestamps([samples[:700], samples[700:]], rate, embedder, 100.0)]
    streamed = np.concatenate([r.embeddings for r in replies if len(r.timestamps_ms)])
    assert np.isfinite(scene.embedding).all() and np.isfinite(stamps.embeddings).all()
    assert np.isfinite(streamed).all() and streamed.shape == stamps.embeddings.shape


@pytest.mark.parametrize("embedder", EMBEDDERS)
async def test_gain_from_1e_minus_30_to_1e20_leaves_the_scene_embedding_unchanged(client, embedder) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 32000).astype(np.float32)
    scenes = [(await client.embed_scene(raw_audio(gain * tone, 32000), embedder)).embedding
              for gain in (np.float32(1e-30), np.float32(1.0), np.float32(1e20))]
    for got in scenes:
        np.testing.assert_allclose(got, scenes[1], atol=1e-4)


def _raw(samples: np.ndarray, rate: int, channels: int = 1) -> audio_pb2.Audio:
    return audio_pb2.Audio(raw=audio_pb2.RawAudio(samples_f32le=samples.astype("<f4").tobytes(), sample_rate=rate,
                                                  channels=channels))


def _bad_requests() -> dict[str, tuple[audio_pb2.EmbedSceneRequest, str]]:
    good = wav_bytes(band_limited(16000, 0.5), 16000, "PCM_16")
    nan = band_limited(16000, 0.5)
    nan[10] = np.nan
    too_long = bytearray(good[:44])
    too_long[40:44] = (16000 * 2 * 3600).to_bytes(4, "little")
    return {
        "not a wav": (audio_pb2.Audio(wav=b"OggS" + bytes(100)), "not a WAV file"),
        "truncated": (audio_pb2.Audio(wav=good[:len(good) // 2]), "truncated"),
        "mu-law": (audio_pb2.Audio(wav=wav_bytes(band_limited(8000, 0.5), 8000, "ULAW")), "unsupported encoding"),
        "empty wav": (audio_pb2.Audio(wav=wav_bytes(np.zeros(0, np.float32), 16000)), "no samples"),
        "too long": (audio_pb2.Audio(wav=bytes(too_long)), "3600.0 s long, more than the maximum of 20 s"),
        "nan wav": (audio_pb2.Audio(wav=wav_bytes(nan, 16000, "FLOAT")), "NaN/Inf"),
        "nan raw": (_raw(nan, 16000), "NaN/Inf"),
        "absurd rate": (_raw(band_limited(16000, 0.5), 7), "sample rate 7 Hz is outside"),
        "huge rate": (_raw(band_limited(16000, 0.5), 2_000_000_000), "sample rate 2000000000 Hz is outside"),
        "ragged raw": (audio_pb2.Audio(raw=audio_pb2.RawAudio(samples_f32le=bytes(10), sample_rate=16000)),
                       "not a whole number"),
        "no audio": (audio_pb2.Audio(), "audio is empty"),
    }


@pytest.mark.parametrize("case", sorted(_bad_requests()))
async def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(audio_server, case) -> None:
    _, port = audio_server
    audio, message = _bad_requests()[case]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = audio_pb2_grpc.AudioServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.EmbedScene(audio_pb2.EmbedSceneRequest(audio=audio), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        good = await stub.EmbedScene(audio_pb2.EmbedSceneRequest(audio=_raw(band_limited(16000, 0.3), 16000)),
                                     timeout=10)
        assert len(good.embedding) > 0


async def test_bad_streams_are_invalid_argument(client) -> None:
    with pytest.raises(AudioClientError) as err:
        [r async for r in client.stream_timestamps([np.full(100, np.nan, np.float32)], 16000)]
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "NaN/Inf" in err.value.message
    with pytest.raises(AudioClientError) as err:
        [r async for r in client.stream_timestamps([np.zeros(100, np.float32)], 16000, embedder="yamnet")]
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "embedder 'yamnet' is unknown" in err.value.message
    with pytest.raises(AudioClientError) as err:
        [r async for r in client.stream_timestamps([np.zeros(16000 * 21, np.float32)], 16000)]
    assert "exceeds the maximum duration of 20 s" in err.value.message


async def test_metrics_count_audio_seconds_and_pass_promtool(audio_server, client) -> None:
    server, _ = audio_server
    await client.embed_scene(raw_audio(band_limited(16000, 2.0), 16000), "bow")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    line = next(s for s in text.splitlines()
                if s.startswith('infersuite_audio_input_duration_seconds_sum{embedder="bow",method="EmbedScene"}'))
    assert float(line.split()[-1]) >= 2.0
    assert 'infersuite_model_ready{model="audio-passt-fp32"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
