"""Hot reload of multi-graph services under load, on real servers (port 0) and tiny models.

Version 2 of each model is version 1 rewritten so that every answer says which versions made it
(tests/graph_edits.py): splitcompute's v2 server graph reverses the class order and carries a
new codec (another version id, other CDF tables); segmentation's v2 stages negate the tokens
between them (only a pipeline of v2 stages gives a sensible mask) and its head reverses the
class order, with the class names and GFLOPs of the v2 meta.json changed to match. A request
that mixed versions, or read derived state (codec tables, pipeline) of another set than the
graphs it ran, gives an answer that matches neither version.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import grpc
import numpy as np
import pytest

from infersuite.protos import segmentation_pb2, segmentation_pb2_grpc, splitcompute_pb2, splitcompute_pb2_grpc
from infersuite.services.segmentation import SegmentationService, SegmentationSettings
from infersuite.services.splitcompute import SplitComputeService, wire
from infersuite.services.splitcompute.codec import Codec
from infersuite.services.splitcompute.edge import EdgeEncoder
from infersuite.services.splitcompute.settings import SplitComputeSettings
from tests.fixtures import serving
from tests.graph_edits import new_version

pytestmark = pytest.mark.integration
SERVER_GRAPH = "splitcompute-server-fp32"


def _codec_v2(meta: dict) -> dict:
    codec = Codec.from_meta(meta)
    flatter = 0.5 * codec.pmf + 0.5 / codec.pmf.shape[1]  # other tables: a v1 body decodes differently
    changed = Codec((codec.version + 1) % 2**32, codec.latent_shape, flatter)
    return {**meta, "codec": changed.to_meta(), "class_names": meta["class_names"][::-1]}


class CodecLoad:
    """Edge devices under load: each asks GetCodec, then sends a frame coded with the announced codec."""

    def __init__(self, stub, frames: dict[int, list[bytes]]):
        self.stub, self.frames = stub, frames
        self.answers: list[tuple[int, int, splitcompute_pb2.ClassifyResponse]] = []  # (frame version, image, reply)
        self.refused: list[tuple[int, float]] = []  # (frame version, when)
        self.announced: list[tuple[int, tuple[int, ...], float]] = []  # GetCodec: (version, served, when received)
        self.other_errors: list[str] = []

    async def device(self, seed: int, until: float) -> None:
        rng = np.random.default_rng(seed)
        while time.monotonic() < until:
            codec = await self.stub.GetCodec(splitcompute_pb2.GetCodecRequest(), timeout=10)
            self.announced.append((codec.codec_version, tuple(codec.served_versions), time.monotonic()))
            image = int(rng.integers(len(self.frames[codec.codec_version])))
            try:
                reply = await self.stub.Classify(splitcompute_pb2.ClassifyRequest(
                    payload=self.frames[codec.codec_version][image]), timeout=10)
                self.answers.append((codec.codec_version, image, reply))
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self.refused.append((codec.codec_version, time.monotonic()))
                else:
                    self.other_errors.append(f"{err.code().name}: {err.details()}")


def _frames(tiny_splitcompute, v1: Codec, v2: Codec, count: int) -> dict[int, list[bytes]]:
    encoder = EdgeEncoder(tiny_splitcompute.encoder_bundle)
    frames: dict[int, list[bytes]] = {v1.version: [], v2.version: []}
    for image in tiny_splitcompute.images[:count]:
        payload = encoder.encode(image).payload
        symbols = v1.decode(wire.parse(payload, 1 << 20, 1 << 20).body).astype(np.int32)
        frames[v1.version].append(payload)
        frames[v2.version].append(wire.pack(v2.version, v2.latent_shape, v2.encode(symbols)))
    return frames


async def test_splitcompute_reload_under_load_swaps_codec_and_graph_together(tiny_splitcompute, tmp_path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_splitcompute.repository, repository)
    edge = EdgeEncoder(tiny_splitcompute.encoder_bundle)
    v1 = edge.codec
    async with serving([SplitComputeService(SplitComputeSettings())], repository) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        stub = splitcompute_pb2_grpc.SplitComputeServiceStub(channel)
        meta2 = new_version(repository, SERVER_GRAPH, {"reverse_outputs": {"probabilities": 1}}, _codec_v2)
        v2 = Codec.from_meta(meta2)
        frames = _frames(tiny_splitcompute, v1, v2, 12)
        reference = [np.array((await stub.Classify(splitcompute_pb2.ClassifyRequest(payload=f))).probabilities)
                     for f in frames[v1.version]]
        load = CodecLoad(stub, frames)
        until = time.monotonic() + 3.0
        devices = [asyncio.create_task(load.device(seed, until)) for seed in range(4)]
        await asyncio.sleep(1.0)
        reload_started = time.monotonic()
        outcomes = await served.server.reloader.poll_once()
        await asyncio.gather(*devices)
        final = await stub.GetCodec(splitcompute_pb2.GetCodecRequest())

    names_v1 = edge.class_names
    mismatched, by_version = [], {"1": 0, "2": 0}
    for frame_version, image, reply in load.answers:
        want_version = "1" if frame_version == v1.version else "2"
        want = reference[image] if want_version == "1" else reference[image][::-1]
        got = np.array(reply.probabilities)
        if (reply.codec_version != frame_version or reply.model.version != want_version
                or not np.allclose(got, want, atol=1e-5)
                or reply.top_class_name != names_v1[int(np.argmax(reference[image]))]):
            mismatched.append((frame_version, image, reply.codec_version, reply.model.version))
        by_version[reply.model.version] += 1
    assert mismatched == [], mismatched[:5]
    assert all(version in served for version, served, _ in load.announced), "GetCodec announced an unserved codec"
    # Only a device that fetched v1 before the swap and sent after it is refused; never a v2 frame.
    assert all(version == v1.version and when > reload_started for version, when in load.refused), load.refused
    assert not load.other_errors, load.other_errors
    assert (final.codec_version, list(final.served_versions)) == (v2.version, [v2.version])
    assert by_version["1"] > 0 and by_version["2"] > 0, by_version  # the swap happened under load
    assert [(o.model, o.version, o.state) for o in outcomes] == [(SERVER_GRAPH, "2", "swapped")], outcomes
    assert set(outcomes[0].meta_changed) == {"codec", "class_names"}, outcomes


def _segmentation_v2(repository, backbone: str) -> dict:
    """Version 2 of every stage graph: tokens negated between stages, classes reversed by the head."""
    stages = json.loads((repository / backbone / "1" / "meta.json").read_text())["pipeline"]["stages"]

    def meta(values: dict) -> dict:
        pipeline = dict(values["pipeline"])
        pipeline["class_names"] = pipeline["class_names"][::-1]
        pipeline["stage_gflops"] = {k: 2 * v for k, v in pipeline["stage_gflops"].items()}
        return {**values, "pipeline": pipeline}

    for layer in stages["encoder_layers"]:
        new_version(repository, layer, {"negate_inputs": ("tokens",), "negate_outputs": ("tokens_out",)})
    new_version(repository, stages["head"], {"negate_inputs": ("tokens",), "reverse_outputs": {"logits": 1}})
    return new_version(repository, backbone, {"negate_outputs": ("tokens",)}, meta)


async def _segment(stub, image: np.ndarray) -> segmentation_pb2.SegmentResponse:
    raw = segmentation_pb2.RawImage(pixels=image.tobytes(), height=image.shape[0], width=image.shape[1], channels=3)
    return await stub.Segment(segmentation_pb2.SegmentRequest(
        raw=raw, mask_encoding=segmentation_pb2.MASK_ENCODING_RAW), timeout=20)


async def _segment_loop(stub, images: list[np.ndarray], until: float, answers: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while time.monotonic() < until:
        index = int(rng.integers(len(images)))
        answers.append((index, await _segment(stub, images[index])))


def _mask(reply) -> np.ndarray:
    return np.frombuffer(reply.mask, np.uint8).reshape(reply.height, reply.width)


async def test_segmentation_reload_under_load_never_mixes_stage_versions(tiny_segmentation, tmp_path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_segmentation.repository, repository)
    backbone = SegmentationSettings().backbone_model
    images = list(tiny_segmentation.images[:6])
    async with serving([SegmentationService(SegmentationSettings())], repository) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)
        reference = [await _segment(stub, image) for image in images]
        meta2 = _segmentation_v2(repository, backbone)
        answers: list = []
        until = time.monotonic() + 4.0
        load = [asyncio.create_task(_segment_loop(stub, images, until, answers, seed)) for seed in range(4)]
        await asyncio.sleep(1.0)
        outcomes = await served.server.reloader.poll_once()
        await asyncio.gather(*load)

    classes = len(reference[0].class_names)
    mismatched, by_version = [], {"1": 0, "2": 0}
    for index, reply in answers:
        ref = reference[index]
        v2 = reply.model.version == "2"
        want_mask = (classes - 1 - _mask(ref)) if v2 else _mask(ref)
        want_names = list(ref.class_names)[::-1] if v2 else list(ref.class_names)
        want_gflops = 2 * ref.gflops if v2 else ref.gflops
        if (not np.array_equal(_mask(reply), want_mask) or list(reply.class_names) != want_names
                or not np.isclose(reply.gflops, want_gflops) or reply.exit_layer != ref.exit_layer):
            mismatched.append((index, reply.model.version, reply.exit_layer))
        by_version[reply.model.version] += 1
    assert mismatched == [], mismatched[:5]
    assert by_version["1"] > 0 and by_version["2"] > 0, by_version  # the swap happened under load
    stage_count = 2 + len(meta2["pipeline"]["stages"]["encoder_layers"])
    assert sorted((o.version, o.state) for o in outcomes) == [("2", "swapped")] * stage_count, outcomes
    assert [o.meta_changed for o in outcomes if o.model == backbone] == [("pipeline",)]
