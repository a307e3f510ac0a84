"""A model whose graph answers NaN makes the audio service fail loudly: INTERNAL with a clear
message on every RPC, counted in infersuite_model_nonfinite_outputs_total, never an OK reply."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest

from exporters.repository import ServingConfig, write_model
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.audio.client import AudioClient, AudioClientError, raw_audio
from tests.fixtures import serving, write_nan_embedder_onnx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def nan_server(tiny_audio, tmp_path_factory):
    repository = tmp_path_factory.mktemp("nan-audio") / "repo"
    shutil.copytree(tiny_audio.repository / "audio-bow-fp32", repository / "audio-bow-fp32")
    nan_graph = write_nan_embedder_onnx(repository.parent / "nan.onnx")
    write_model(repository, "audio-passt-fp32", nan_graph, {"family": "audio", "window_samples": 32000,
                                                            "sample_rate": 32000}, ServingConfig(max_batch_size=64))
    async with serving([AudioService(AudioSettings(max_duration_s=20.0))], repository) as served:
        yield served.server, served.port


async def test_every_rpc_fails_with_internal_and_the_failures_are_counted(nan_server) -> None:
    server, port = nan_server
    tone = np.sin(np.arange(32000) / 5.0).astype(np.float32)
    async with AudioClient(f"127.0.0.1:{port}") as client:
        calls = [client.embed_scene(raw_audio(tone, 32000), "passt"),
                 client.embed_timestamps(raw_audio(tone, 32000), "passt", 100.0)]
        for call in calls:
            with pytest.raises(AudioClientError) as err:
                await call
            assert err.value.code == grpc.StatusCode.INTERNAL
            assert "model 'audio-passt-fp32' produced NaN/Inf in its output 'embedding'" in err.value.message
        with pytest.raises(AudioClientError) as err:
            [r async for r in client.stream_timestamps([tone], 32000, "passt", 100.0)]
        assert err.value.code == grpc.StatusCode.INTERNAL and "NaN/Inf" in err.value.message
        good = await client.embed_scene(raw_audio(tone, 32000), "bow")  # the other model still answers
        assert np.isfinite(good.embedding).all()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'infersuite_model_nonfinite_outputs_total{model="audio-passt-fp32"} 3.0' in text
    assert 'infersuite_model_nonfinite_outputs_total{model="audio-bow-fp32"} 0.0' in text
    assert ('infersuite_requests_total{code="INTERNAL",method="EmbedScene",'
            'service="infersuite.audio.v1.AudioService"} 1.0') in text
    check = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=text,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
