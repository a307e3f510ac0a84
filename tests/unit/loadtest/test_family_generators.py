"""Segmentation, audio and splitcompute generators: request pools and response checks."""

import asyncio
import io
import wave

import numpy as np
import pytest

from infersuite.loadtest.generators import GeneratorError, create
from infersuite.loadtest.generators.audio import ClipShape, check_audio
from infersuite.loadtest.generators.segmentation import ImageShape, check_segment
from infersuite.loadtest.generators.splitcompute import FrameShape, check_classify
from infersuite.protos import audio_pb2, segmentation_pb2, splitcompute_pb2


def _pool(name, params, size=40):
    return asyncio.run(create(name, params).build(None, np.random.default_rng(0), size))


def test_segmentation_images_vary_in_size_encoding_and_effort():
    pool = _pool("segmentation", {"min_side": "32", "max_side": "96", "effort": "exits:2,4"})
    requests = [segmentation_pb2.SegmentRequest.FromString(p) for p in pool.payloads]
    kinds = {r.WhichOneof("image") for r in requests}
    assert kinds == {"encoded", "raw"}
    assert {r.effort.exit_layer for r in requests} == {2, 4}
    sides = {(s.height, s.width) for s in pool.expectations}
    assert len(sides) > 10 and all(32 <= h <= 96 and 32 <= w <= 96 for h, w in sides)
    for request, shape in zip(requests, pool.expectations, strict=True):
        if request.HasField("raw"):
            assert len(request.raw.pixels) == shape.height * shape.width * 3
        else:
            assert request.encoded[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(GeneratorError, match="auto, exit:N or exits"):
        create("segmentation", {"effort": "mixed"})


def test_segmentation_check():
    shape = ImageShape(2, 3)
    good = segmentation_pb2.SegmentResponse(mask=bytes([0, 1, 2, 0, 1, 2]), height=2, width=3,
                                            mask_encoding=segmentation_pb2.MASK_ENCODING_RAW,
                                            class_names=["a", "b", "c"], exit_layer=3, gflops=1.0,
                                            gflops_full_depth=2.0)
    assert check_segment(shape, good.SerializeToString()) is None
    for change, failure in [({"mask": bytes(5)}, "height x width"), ({"height": 3}, "size differs"),
                            ({"mask": bytes([0, 1, 2, 0, 1, 3])}, "class id"), ({"gflops": 3.0}, "gflops"),
                            ({"exit_layer": 0}, "exit_layer")]:
        bad = segmentation_pb2.SegmentResponse()
        bad.CopyFrom(good)
        for field, value in change.items():
            setattr(bad, field, value)
        assert failure in check_segment(shape, bad.SerializeToString())


def test_audio_clips_vary_and_wav_files_are_valid():
    pool = _pool("audio", {"min_s": "0.2", "max_s": "0.6"})
    requests = [audio_pb2.EmbedSceneRequest.FromString(p) for p in pool.payloads[:32]]
    rates = set()
    for request, clip in zip(requests, pool.expectations, strict=False):
        if request.audio.HasField("wav"):
            with wave.open(io.BytesIO(request.audio.wav)) as wav:
                rates.add(wav.getframerate())
                assert wav.getnframes() / wav.getframerate() == pytest.approx(clip.duration_s)
        else:
            raw = request.audio.raw
            rates.add(raw.sample_rate)
            frames = len(raw.samples_f32le) // 4 // raw.channels
            assert frames / raw.sample_rate == pytest.approx(clip.duration_s)
        assert 0.2 <= clip.duration_s <= 0.6
    assert len(rates) >= 3
    assert pool.method.endswith("/EmbedScene")
    assert _pool("audio", {"method": "timestamps"}, size=2).method.endswith("/EmbedTimestamps")


def test_audio_check():
    scene = ClipShape(2.0, "scene", 50.0)
    good = audio_pb2.EmbedSceneResponse(embedding=[0.1, 0.2], duration_s=2.0)
    assert check_audio(scene, good.SerializeToString()) is None
    assert "duration" in check_audio(scene, audio_pb2.EmbedSceneResponse(embedding=[0.1], duration_s=1.0)
                                     .SerializeToString())
    assert "non-finite" in check_audio(scene, audio_pb2.EmbedSceneResponse(embedding=[float("inf")], duration_s=2.0)
                                       .SerializeToString())
    stamps = ClipShape(1.0, "timestamps", 100.0)
    answer = audio_pb2.EmbedTimestampsResponse(duration_s=1.0)
    for i in range(11):
        answer.embeddings.add(timestamp_ms=100.0 * i, embedding=[0.0, 1.0])
    assert check_audio(stamps, answer.SerializeToString()) is None
    del answer.embeddings[5:]
    assert "timestamp count" in check_audio(stamps, answer.SerializeToString())


def test_splitcompute_needs_sdk_payloads(tmp_path):
    with pytest.raises(GeneratorError, match="payloads=DIR"):
        create("splitcompute", {})
    with pytest.raises(GeneratorError, match=r"no \*\.bin payloads"):
        create("splitcompute", {"payloads": str(tmp_path)})


def test_splitcompute_check():
    frame = FrameShape(classes=3, payload_bytes=120, served_versions=frozenset({1, 2}))
    good = splitcompute_pb2.ClassifyResponse(probabilities=[0.2, 0.5, 0.3], top_class=1, payload_bytes=120,
                                             codec_version=2)
    assert check_classify(frame, good.SerializeToString()) is None
    for change, failure in [({"top_class": 0}, "argmax"), ({"payload_bytes": 99}, "payload_bytes"),
                            ({"codec_version": 7}, "codec_version")]:
        bad = splitcompute_pb2.ClassifyResponse()
        bad.CopyFrom(good)
        for field, value in change.items():
            setattr(bad, field, value)
        assert failure in check_classify(frame, bad.SerializeToString())
    not_normalised = splitcompute_pb2.ClassifyResponse(probabilities=[0.2, 0.2, 0.2], top_class=0, payload_bytes=120)
    assert "distribution" in check_classify(frame, not_normalised.SerializeToString())
