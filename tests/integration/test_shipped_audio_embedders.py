"""The shipped audio embedders (shipped_models/, the PaSST pretrained on the audio corpus since
`make ship-audio-pretrained`) served by a real server give the HEAR module's embeddings of the same
repository, and answer finite embeddings on a real-audio-like signal. test_audio_service.py checks
the same on tiny trained models; this is the copy users get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hear_infersuite as hear
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.audio.client import AudioClient, raw_audio
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[2] / "shipped_models"


def _speech_like(rate: int, seconds: float) -> np.ndarray:
    """A voiced, formant-shaped signal with a 4 Hz syllable envelope and a little noise."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 120.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) * np.exp(-((k * 120.0 - 700.0) / 500.0) ** 2) for k in range(1, 40))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t))
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.003
    return (0.3 * envelope * voiced + noise).astype(np.float32)


@pytest.mark.parametrize("embedder", ["passt", "bow"])
async def test_the_shipped_server_gives_the_shipped_hear_module_embeddings(embedder: str) -> None:
    audio = _speech_like(32000, 2.7)
    model = hear.load_model(str(SHIPPED / f"audio-{embedder}-fp32"))
    async with serving([AudioService(AudioSettings(max_duration_s=20.0))], SHIPPED) as served, \
            AudioClient(f"127.0.0.1:{served.port}") as client:
        scene = await client.embed_scene(raw_audio(audio, 32000), embedder)
        stamps = await client.embed_timestamps(raw_audio(audio, 32000), embedder, hop_ms=50.0)
    want_scene = hear.get_scene_embeddings(torch.from_numpy(audio[None]), model)[0].numpy()
    want, want_ms = hear.get_timestamp_embeddings(torch.from_numpy(audio[None]), model)
    assert scene.model == f"audio-{embedder}-fp32" and np.isfinite(scene.embedding).all()
    assert np.linalg.norm(scene.embedding) > 0
    np.testing.assert_allclose(scene.embedding, want_scene, atol=1e-5)
    np.testing.assert_array_equal(stamps.timestamps_ms, want_ms[0].numpy())
    np.testing.assert_allclose(stamps.embeddings, want[0].numpy(), atol=1e-5)
