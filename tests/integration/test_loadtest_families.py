"""The family generators against the real services: every response passes its check.

Splitcompute frames come from the real edge SDK (written to files, as a user would); images and
audio clips and their checks come from the generators alone."""

from __future__ import annotations

import pytest

from infersuite.loadtest.engine import LoadEngine, StepSpec, Target
from infersuite.loadtest.generators import create
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.runtime import RuntimeSettings, build_server
from infersuite.services.segmentation import SegmentationService
from infersuite.services.splitcompute import SplitComputeService
from infersuite.services.splitcompute.edge import EdgeEncoder

pytestmark = pytest.mark.integration
STEP = StepSpec(mode="closed", concurrency=2, warmup_s=0.2, duration_s=1.0, deadline_s=10.0)


async def _run(repository, service, generator: str, params: dict[str, str]):
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=repository)
    server, port = await build_server(settings, [service])
    await server.start()
    await server.wait_ready(timeout=60)
    engine = LoadEngine(Target(f"127.0.0.1:{port}"), create(generator, params), pool_size=16)
    try:
        await engine.start()
        return await engine.run_step(STEP)
    finally:
        await engine.close()
        await server.stop(0)


async def test_splitcompute_frames_from_the_edge_sdk(tiny_splitcompute, tmp_path):
    encoder = EdgeEncoder(tiny_splitcompute.encoder_bundle)
    for index in range(6):
        (tmp_path / f"frame{index}.bin").write_bytes(encoder.encode(tiny_splitcompute.images[index]).payload)
    stats = await _run(tiny_splitcompute.repository, SplitComputeService(), "splitcompute",
                       {"payloads": str(tmp_path)})
    assert stats.ok > 0 and not stats.errors and not stats.check_failures, (stats.errors, stats.error_samples)


async def test_audio_clips_of_varied_rates(tiny_audio):
    for method in ("scene", "timestamps"):
        stats = await _run(tiny_audio.repository, AudioService(AudioSettings(max_duration_s=20.0)), "audio",
                           {"method": method, "min_s": "0.3", "max_s": "1.5", "embedder": "bow"})
        assert stats.ok > 0 and not stats.errors and not stats.check_failures, (
            method, stats.errors, stats.error_samples, stats.check_failures)


async def test_segmentation_images_of_mixed_size_and_effort(tiny_segmentation):
    for effort in ("auto", "exits:2,3"):  # the tiny model exits after layer 2 or 3
        stats = await _run(tiny_segmentation.repository, SegmentationService(), "segmentation",
                           {"min_side": "48", "max_side": "128", "effort": effort})
        assert stats.ok > 0 and not stats.errors and not stats.check_failures, (
            effort, stats.errors, stats.error_samples, stats.check_failures)
