"""The splitcompute service end to end: the edge SDK through a real server on port 0."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import torch

from infersuite.protos import splitcompute_pb2, splitcompute_pb2_grpc
from infersuite.services.splitcompute import SplitComputeService, wire
from infersuite.services.splitcompute.client import SplitComputeClient, SplitComputeClientError
from infersuite.services.splitcompute.edge import EdgeDevice, EdgeEncoder
from infersuite.services.splitcompute.settings import SplitComputeSettings
from models.splitcompute.data import to_float
from models.splitcompute.train import load_student, quantize, single_thread
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SERVICE_NAME = "infersuite.splitcompute.v1.SplitComputeService"


@pytest.fixture(scope="module")
async def sc_server(tiny_splitcompute):
    service = SplitComputeService(SplitComputeSettings(max_payload_bytes=8192))
    async with serving([service], tiny_splitcompute.repository) as served:
        yield served.server, served.port


@pytest.fixture
async def client(sc_server):
    async with SplitComputeClient(f"127.0.0.1:{sc_server[1]}") as sc:
        yield sc


def _torch_classes(checkpoint, images: np.ndarray, radius: int) -> np.ndarray:
    """The reference pipeline in torch: encoder -> round + clip -> decoder -> tail."""
    student, _ = load_student(checkpoint)
    with torch.no_grad(), single_thread():
        latent = quantize(student.encoder(torch.from_numpy(to_float(images))), radius)
        return student.tail(student.decoder(latent)).argmax(dim=1).numpy()


async def test_the_edge_sdk_through_the_server_agrees_with_the_torch_pipeline(sc_server, tiny_splitcompute) -> None:
    _, port = sc_server
    images = tiny_splitcompute.images.transpose(0, 2, 3, 1)  # (N, H, W, 3) as a camera gives them

    def run_device() -> list:
        with EdgeDevice(tiny_splitcompute.encoder_bundle, f"127.0.0.1:{port}") as device:
            assert device.server_codec_version() == device.encoder.codec_version
            return [device.classify(image) for image in images]

    results = await asyncio.to_thread(run_device)
    codec = EdgeEncoder(tiny_splitcompute.encoder_bundle).codec
    want = _torch_classes(tiny_splitcompute.checkpoint, tiny_splitcompute.images, codec.radius)
    got = np.array([r.top_class for r in results])
    agreement = float((got == want).mean())
    assert len(results) == 200 and agreement >= 0.995, agreement
    first = results[0]
    assert first.payload_bytes > wire.HEADER_BYTES and first.classification.payload_bytes == first.payload_bytes
    assert set(first.stage_seconds) == {"encoder", "quantize", "entropy_code", "round_trip"}
    assert all(v > 0 for v in first.stage_seconds.values())
    np.testing.assert_allclose(first.classification.probabilities.sum(), 1.0, atol=1e-5)


async def test_get_codec_names_the_current_version_and_bundle(client, tiny_splitcompute) -> None:
    codec = await client.get_codec()
    local = EdgeEncoder(tiny_splitcompute.encoder_bundle).codec
    assert codec.version == local.version and codec.served_versions == (local.version,)
    assert codec.latent_shape == local.latent_shape and codec.encoder_model == "splitcompute-encoder-fp32"
    assert codec.wire_format == wire.WIRE_FORMAT and codec.class_names[0] == "fine-0deg"


async def test_an_unknown_codec_version_is_a_failed_precondition_listing_the_served_ones(
        client, tiny_splitcompute) -> None:
    encoder = EdgeEncoder(tiny_splitcompute.encoder_bundle)
    good = encoder.encode(tiny_splitcompute.images[0]).payload
    stale = wire.pack(encoder.codec_version ^ 0xFFFF, encoder.codec.latent_shape, good[wire.HEADER_BYTES:])
    with pytest.raises(SplitComputeClientError) as err:
        await client.classify(stale)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"this server has codec versions: {encoder.codec_version}" in err.value.message


def _bad_payloads(good: bytes, version: int, shape: tuple[int, int, int]) -> dict[str, tuple[bytes, str]]:
    body = good[wire.HEADER_BYTES:]
    flipped = bytearray(good)
    flipped[-1] ^= 0x40
    c, h, w = shape
    return {
        "truncated": (good[:len(good) // 2], "CRC-32"),
        "truncated header": (good[:9], "shorter than the 17-byte header"),
        "corrupted": (bytes(flipped), "CRC-32"),
        "oversized": (good + b"\0" * 9000, "more than the maximum of 8192"),
        "shape lies (bigger)": (wire.pack(version, (c, h * 2, w), body), "but codec version"),
        "shape lies (huge)": (wire.pack(version, (60000, 60000, 60000), body), "more than the maximum of 65536"),
        "garbage body with a valid CRC": (wire.pack(version, shape, bytes(range(256)) * 4), "payload body"),
        "empty": (b"", "shorter than the 17-byte header"),
    }


async def test_every_corrupted_payload_kind_is_invalid_argument_and_the_server_keeps_serving(
        sc_server, tiny_splitcompute) -> None:
    _, port = sc_server
    encoder = EdgeEncoder(tiny_splitcompute.encoder_bundle)
    good = encoder.encode(tiny_splitcompute.images[1]).payload
    cases = _bad_payloads(good, encoder.codec_version, encoder.codec.latent_shape)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = splitcompute_pb2_grpc.SplitComputeServiceStub(channel)
        for case, (payload, message) in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Classify(splitcompute_pb2.ClassifyRequest(payload=payload), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
            assert message in err.value.details(), (case, err.value.details())
            reply = await stub.Classify(splitcompute_pb2.ClassifyRequest(payload=good), timeout=5)
            assert len(reply.probabilities) == 10, case


async def test_metrics_pass_promtool_and_record_payload_bytes(sc_server, client, tiny_splitcompute) -> None:
    server, _ = sc_server
    payload = EdgeEncoder(tiny_splitcompute.encoder_bundle).encode(tiny_splitcompute.images[2]).payload
    await client.classify(payload)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f'infersuite_requests_total{{code="OK",method="Classify",service="{SERVICE_NAME}"}}' in text
    assert "infersuite_splitcompute_payload_bytes_bucket" in text
    assert "infersuite_splitcompute_entropy_decode_duration_seconds_bucket" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
