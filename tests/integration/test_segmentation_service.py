"""The segmentation service end to end: a tiny ECO-M2F exported as staged graphs, a real server
on port 0, real images through gRPC, masks compared with the torch model."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from infersuite.protos import segmentation_pb2, segmentation_pb2_grpc
from infersuite.services.segmentation import SegmentationService, SegmentationSettings
from infersuite.services.segmentation.client import SegmentationClient, SegmentationClientError
from models.segmentation.data import to_model_input
from models.segmentation.train import load_checkpoint
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SERVICE_NAME = "infersuite.segmentation.v1.SegmentationService"


@pytest.fixture(scope="module")
async def seg_server(tiny_segmentation):
    # One onnxruntime thread per session: on the shared test machine spinning threads cost more than they give.
    service = SegmentationService(SegmentationSettings(max_side=512, max_pixels=200_000))
    async with serving([service], tiny_segmentation.repository, intra_op_threads=1, ready_timeout_s=120) as served:
        yield served.server, served.port


@pytest.fixture
async def client(seg_server):
    _, port = seg_server
    async with SegmentationClient(f"127.0.0.1:{port}", timeout_s=30) as seg:
        yield seg


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _torch_masks(checkpoint, images: np.ndarray, exit_layer: int | None) -> tuple[np.ndarray, np.ndarray]:
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        logits, exits = model(torch.from_numpy(to_model_input(images)), exit_layer)
    return logits.argmax(1).numpy().astype(np.uint8), exits.numpy()


async def test_health_reaches_serving_for_the_server_and_the_service(seg_server) -> None:
    _, port = seg_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("exit_layer", [None, 2, 3])
async def test_served_masks_and_exits_match_the_torch_model(client, tiny_segmentation, exit_layer) -> None:
    images = tiny_segmentation.images[:6]
    want_masks, want_exits = _torch_masks(tiny_segmentation.checkpoint, images, exit_layer)
    results = await asyncio.gather(*(client.segment(_png(image), exit_layer=exit_layer) for image in images))
    got = np.stack([r.mask for r in results])
    assert got.shape == want_masks.shape == (6, 64, 64)
    assert np.mean(got == want_masks) >= 0.999
    assert [r.exit_layer for r in results] == want_exits.tolist()
    assert all(r.model == "segmentation-backbone-fp32" and r.class_names[0] == "background" for r in results)


async def test_raw_input_and_raw_mask_give_the_png_answer(client, tiny_segmentation) -> None:
    image = tiny_segmentation.images[0]
    as_png = await client.segment(_png(image))
    as_raw = await client.segment(image, raw_mask=True)
    np.testing.assert_array_equal(as_png.mask, as_raw.mask)
    assert as_raw.gflops == pytest.approx(as_png.gflops) and as_raw.gflops < as_raw.gflops_full_depth + 1e-12


async def test_jpeg_and_other_sizes_come_back_at_their_own_size(client, tiny_segmentation) -> None:
    image = np.asarray(Image.fromarray(tiny_segmentation.images[1]).resize((100, 80)))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    result = await client.segment(buffer.getvalue())
    assert result.mask.shape == (80, 100) and set(np.unique(result.mask)) <= set(range(5))


async def test_a_compute_budget_is_never_exceeded(client, tiny_segmentation) -> None:
    deep = await client.segment(_png(tiny_segmentation.images[2]), exit_layer=3)
    shallow = await client.segment(_png(tiny_segmentation.images[2]), exit_layer=2)
    capped = await client.segment(_png(tiny_segmentation.images[2]), gflops_budget=shallow.gflops + 1e-9)
    assert capped.exit_layer == 2 and capped.gflops <= shallow.gflops + 1e-9 < deep.gflops


def _batch_stats(server, model: str) -> tuple[float, float]:
    """(rows, executions) the scheduler has run for `model` so far."""
    registry = server.metrics.registry
    labels = {"model": model}
    return (registry.get_sample_value("infersuite_model_batch_rows_sum", labels) or 0.0,
            registry.get_sample_value("infersuite_model_batch_rows_count", labels) or 0.0)


async def test_concurrent_requests_of_different_depths_share_the_batched_stages(seg_server, client,
                                                                               tiny_segmentation) -> None:
    server, _ = seg_server
    names = ["segmentation-backbone-fp32", "segmentation-encoder1-fp32", "segmentation-encoder3-fp32",
             "segmentation-head-fp32"]
    before = {name: _batch_stats(server, name) for name in names}
    images = [_png(image) for image in tiny_segmentation.images[:4]] * 3  # 12 requests
    depths = [2, 3] * 6
    results = await asyncio.gather(*(client.segment(png, exit_layer=k) for png, k in zip(images, depths, strict=True)))
    assert [r.exit_layer for r in results] == depths
    rows = {name: _batch_stats(server, name)[0] - before[name][0] for name in names}
    runs = {name: _batch_stats(server, name)[1] - before[name][1] for name in names}
    assert rows["segmentation-backbone-fp32"] == 12 and rows["segmentation-encoder1-fp32"] == 12
    assert rows["segmentation-encoder3-fp32"] == 6  # only the depth-3 requests run layer 3
    assert rows["segmentation-head-fp32"] == 12
    # Requests that chose different depths still ran the shared stages in common batches.
    assert runs["segmentation-backbone-fp32"] < 12 and runs["segmentation-encoder1-fp32"] < 12


def _bomb() -> bytes:
    image = Image.new("1", (20_000, 20_000))  # 1-bit: 50 MB in memory, a few KB as PNG
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


BAD_REQUESTS = {
    "no image": (segmentation_pb2.SegmentRequest(), "image is missing"),
    "undecodable bytes": (segmentation_pb2.SegmentRequest(encoded=b"GIF89a-nope"), "not a decodable PNG or JPEG"),
    "wrong raw size": (segmentation_pb2.SegmentRequest(raw=segmentation_pb2.RawImage(
        pixels=b"\0" * 11, height=2, width=2, channels=3)), "has 11 bytes but 2x2x3 needs exactly 12"),
    "zero dimension": (segmentation_pb2.SegmentRequest(raw=segmentation_pb2.RawImage(
        pixels=b"", height=0, width=3, channels=3)), "height and width must be at least 1"),
    "huge dimension": (segmentation_pb2.SegmentRequest(raw=segmentation_pb2.RawImage(
        pixels=b"\0" * 3, height=1, width=100_000, channels=3)), "a side exceeds the maximum of 512"),
    "two channels": (segmentation_pb2.SegmentRequest(raw=segmentation_pb2.RawImage(
        pixels=b"\0" * 8, height=2, width=2, channels=2)), "channels is 2"),
    "exit layer 1": (segmentation_pb2.SegmentRequest(encoded=b"x", effort=segmentation_pb2.Effort(exit_layer=1)),
                     "effort.exit_layer=1 is not an exit of this model (exits are 2..3)"),
    "tiny budget": (segmentation_pb2.SegmentRequest(encoded=b"x", effort=segmentation_pb2.Effort(
        gflops_budget=1e-6)), "the cost of the shallowest exit"),
    "unknown mask encoding": (segmentation_pb2.SegmentRequest(encoded=b"x", mask_encoding=9),
                              "mask_encoding 'enum value 9' is unknown"),
}


@pytest.mark.parametrize("case", [*sorted(BAD_REQUESTS), "decompression bomb"])
async def test_bad_input_gets_invalid_argument_and_the_server_keeps_serving(seg_server, tiny_segmentation,
                                                                            case) -> None:
    _, port = seg_server
    if case == "decompression bomb":
        request, message = segmentation_pb2.SegmentRequest(encoded=_bomb()), "refused before decoding"
    else:
        request, message = BAD_REQUESTS[case]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Segment(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        good = await stub.Segment(segmentation_pb2.SegmentRequest(encoded=_png(tiny_segmentation.images[0])),
                                  timeout=30)
        assert good.height == 64 and good.exit_layer in (2, 3)


async def test_metrics_pass_promtool_and_record_layers_and_gflops(seg_server, client, tiny_segmentation) -> None:
    server, _ = seg_server
    await client.segment(_png(tiny_segmentation.images[0]), exit_layer=3)
    with pytest.raises(SegmentationClientError):
        await client.segment(b"")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f'infersuite_requests_total{{code="OK",method="Segment",service="{SERVICE_NAME}"}}' in text
    assert 'code="INVALID_ARGUMENT",method="Segment"' in text
    assert 'infersuite_segmentation_encoder_layers_bucket{effort="exit_layer",le="3.0"}' in text
    assert 'infersuite_segmentation_gflops_count{effort="exit_layer"}' in text
    assert 'infersuite_model_ready{model="segmentation-encoder3-fp32"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_health_is_not_serving_while_the_models_are_missing(tmp_path) -> None:
    async with serving([SegmentationService(SegmentationSettings())], tmp_path, metrics_port=-1,
                       wait_ready=False) as served, grpc.aio.insecure_channel(served.address) as channel:
        with pytest.raises(Exception, match="not in the model repository"):
            await served.server.wait_ready(timeout=30)
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await segmentation_pb2_grpc.SegmentationServiceStub(channel).Segment(
                segmentation_pb2.SegmentRequest(encoded=b"x"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
