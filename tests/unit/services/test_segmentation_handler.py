"""The segmentation handler's rules against fake stage models (no sockets, no onnxruntime):
the depth loop, effort modes, image validation (decompression bombs included), mask encodings."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping

import numpy as np
import pytest
from PIL import Image, ImageFile

from infersuite.services.runtime import InvalidArgument, Runtime, RuntimeSettings
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.segmentation.handler import Effort, RawPixels, SegmentationHandler, SegmentQuery
from infersuite.services.segmentation.settings import SegmentationSettings
from tests.fixtures import FakeModel

SIZE, CLASSES, GATE_EXIT = 8, 5, 4
COSTS = {"backbone_gate": 0.02, "encoder_layer": 0.01, "head": 0.005}
LAYERS = [f"seg-encoder{k}" for k in range(1, 7)]
META = {"pipeline": {"stages": {"backbone": "seg-backbone", "encoder_layers": LAYERS, "head": "seg-head"},
                     "image_size": SIZE, "exits": [2, 3, 4, 5, 6], "class_names": ["bg", "a", "b", "c", "d"],
                     "stage_gflops": COSTS}}


def _backbone(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    b = inputs["image"].shape[0]
    exit_logits = np.zeros((b, 5), np.float32)
    exit_logits[:, GATE_EXIT - 2] = 1.0
    return {"tokens": np.zeros((b, 4, 2), np.float32), "pixel_features": np.zeros((b, 1, 2, 2), np.float32),
            "exit_logits": exit_logits}


def _layer(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"tokens_out": inputs["tokens"] + 1.0}  # tokens count the layers that ran


def _head(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    depth = int(inputs["tokens"][0, 0, 0])
    logits = np.zeros((1, CLASSES, SIZE, SIZE), np.float32)
    logits[:, depth % CLASSES] = 1.0  # the mask says how deep the loop went
    return {"logits": logits}


GATE_AFTER_EXIT = 5  # the gate stage's choice, when the tokens it reads went through exactly 2 layers
GATE_STAGE_META = {"pipeline": {**META["pipeline"], "gate_after_layer": 2,
                                "stages": {**META["pipeline"]["stages"], "gate": "seg-gate"}}}


def _backbone_without_gate(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs = _backbone(inputs)
    del outputs["exit_logits"]
    return outputs


def _gate_stage(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    exit_logits = np.zeros((inputs["tokens"].shape[0], 5), np.float32)
    exit_logits[:, GATE_AFTER_EXIT - 2 if inputs["tokens"][0, 0, 0] == 2.0 else 0] = 1.0
    return {"exit_logits": exit_logits}


@pytest.fixture
async def setup(tmp_path):
    async for ready in _setup(tmp_path, {"seg-backbone": FakeModel("seg-backbone", _backbone, META)}):
        yield ready


@pytest.fixture
async def setup_gate_stage(tmp_path):
    models = {"seg-backbone": FakeModel("seg-backbone", _backbone_without_gate, GATE_STAGE_META),
              "seg-gate": FakeModel("seg-gate", _gate_stage)}
    async for ready in _setup(tmp_path, models):
        yield ready


async def _setup(tmp_path, models):
    metrics = Metrics()
    manager = ModelManager(ModelRepository(tmp_path), backend=None, metrics=metrics)  # type: ignore[arg-type]
    models = {**models, "seg-head": FakeModel("seg-head", _head)}
    models.update({name: FakeModel(name, _layer) for name in LAYERS})
    for model in models.values():
        manager.attach(model, BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0))
    settings = SegmentationSettings(backbone_model="seg-backbone", max_side=1000, max_pixels=250_000,
                                    max_image_bytes=1_000_000)
    runtime = Runtime(RuntimeSettings(), manager, metrics)
    handler = SegmentationHandler(settings, runtime)
    runtime.initialize("segmentation", list(models))
    yield handler, models, metrics
    await manager.close()


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


AUTO = Effort()


async def _segment(handler: SegmentationHandler, image, effort: Effort = AUTO, encoding: str = "raw"):
    return await handler.segment(SegmentQuery(image, effort, encoding))


RGB = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


async def test_auto_runs_the_gates_depth_once_through_each_stage(setup) -> None:
    handler, models, _ = setup
    result = await _segment(handler, _png(RGB))
    assert result.exit_layer == GATE_EXIT
    assert np.all(np.frombuffer(result.mask, np.uint8) == GATE_EXIT % CLASSES)
    assert [len(models[name].calls) for name in LAYERS] == [1, 1, 1, 1, 0, 0]
    assert len(models["seg-head"].calls) == 1
    assert result.gflops == pytest.approx(0.02 + 4 * 0.01 + 0.005)
    assert result.gflops_full_depth == pytest.approx(0.02 + 6 * 0.01 + 0.005)


async def test_a_gate_stage_after_layer_2_reads_those_tokens_and_the_loop_continues_from_layer_3(
        setup_gate_stage) -> None:
    handler, models, _ = setup_gate_stage
    result = await _segment(handler, _png(RGB))
    assert result.exit_layer == GATE_AFTER_EXIT
    assert np.all(np.frombuffer(result.mask, np.uint8) == GATE_AFTER_EXIT % CLASSES)
    assert [len(models[name].calls) for name in LAYERS] == [1, 1, 1, 1, 1, 0]
    assert len(models["seg-gate"].calls) == 1 and len(models["seg-head"].calls) == 1
    assert result.gflops == pytest.approx(0.02 + 5 * 0.01 + 0.005)
    fixed = await _segment(handler, _png(RGB), Effort("exit_layer", 2))
    assert fixed.exit_layer == 2 and [len(models[name].calls) for name in LAYERS] == [2, 2, 1, 1, 1, 0]


async def test_fixed_exit_layer_overrides_the_gate(setup) -> None:
    handler, models, _ = setup
    result = await _segment(handler, _png(RGB), Effort("exit_layer", 6))
    assert result.exit_layer == 6 and len(models[LAYERS[5]].calls) == 1


@pytest.mark.parametrize(("budget", "expected"), [(0.02 + 3 * 0.01 + 0.005, 3), (0.0555, 3), (10.0, GATE_EXIT),
                                                 (0.02 + 2 * 0.01 + 0.005, 2)])
async def test_a_compute_budget_caps_the_gates_choice(setup, budget, expected) -> None:
    handler, _, _ = setup
    result = await _segment(handler, _png(RGB), Effort("gflops_budget", budget))
    assert result.exit_layer == expected and result.gflops <= budget + 1e-12


@pytest.mark.parametrize(("effort", "message"), [
    (Effort("exit_layer", 1), "effort.exit_layer=1 is not an exit of this model (exits are 2..6)"),
    (Effort("exit_layer", 7), "effort.exit_layer=7 is not an exit"),
    (Effort("exit_layer", 0), "effort.exit_layer=0 is not an exit"),
    (Effort("gflops_budget", 0.01), "is below 0.0450, the cost of the shallowest exit"),
    (Effort("gflops_budget", float("nan")), "effort.gflops_budget=nan"),
    (Effort("gflops_budget", -1.0), "effort.gflops_budget=-1 is below"),
])
async def test_invalid_effort_is_rejected(setup, effort, message) -> None:
    handler, _, _ = setup
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        await _segment(handler, _png(RGB), effort)


async def test_raw_grey_input_of_another_size_gets_a_mask_of_its_own_size(setup) -> None:
    handler, models, _ = setup
    grey = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    result = await _segment(handler, RawPixels(grey.tobytes(), 5, 7, 1))
    assert (result.height, result.width) == (5, 7) and len(result.mask) == 35
    sent = models["seg-backbone"].calls[0]["image"]
    assert sent.shape == (1, 3, SIZE, SIZE) and sent.dtype == np.float32
    assert np.allclose(sent[0, 0], sent[0, 1])  # grey repeated to RGB


async def test_png_and_raw_masks_agree_and_png_decodes_to_class_ids(setup) -> None:
    handler, _, _ = setup
    as_png = await _segment(handler, RawPixels(RGB.tobytes(), SIZE, SIZE, 3), encoding="png")
    as_raw = await _segment(handler, _png(RGB), encoding="raw")
    decoded = np.asarray(Image.open(io.BytesIO(as_png.mask)))
    np.testing.assert_array_equal(decoded, np.frombuffer(as_raw.mask, np.uint8).reshape(SIZE, SIZE))


async def test_rgba_png_and_jpeg_are_accepted(setup) -> None:
    handler, _, _ = setup
    rgba = np.dstack([RGB, np.full((SIZE, SIZE), 128, np.uint8)])
    assert (await _segment(handler, _png(rgba))).height == SIZE
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="JPEG")
    assert (await _segment(handler, buffer.getvalue())).width == SIZE


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny IDAT: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(setup, monkeypatch) -> None:
    """Counted, not timed: PIL's pixel decoder (ImageFile.load) never runs for an oversized header. A
    decoder that ran would be the regression, fast or slow (this IDAT is tiny, so even a decode that
    allocated 30 GB lazily could finish quickly)."""
    handler, models, _ = setup
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        decoded.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    bomb_message = r"image.encoded declares more than the maximum of 250000 pixels: refused before decoding"
    with pytest.raises(InvalidArgument, match=bomb_message):
        await _segment(handler, _png_header_only(100_000, 100_000))
    with pytest.raises(InvalidArgument, match="a side exceeds the maximum of 1000"):
        await _segment(handler, _png_header_only(2000, 10))
    with pytest.raises(InvalidArgument, match="refused before decoding"):
        await _segment(handler, _png_header_only(520, 500))  # just over the limit (PIL only warns there)
    assert decoded == []  # 30 GB (and 1 MB) of pixels were never decoded
    assert not models["seg-backbone"].calls
    await _segment(handler, _png(RGB))
    assert set(decoded) == {(SIZE, SIZE)}  # the counter sees a real decode


@pytest.mark.parametrize(("image", "message"), [
    (None, "image is missing"),
    (b"", "image.encoded is empty"),
    (b"not an image at all", "image.encoded is not a decodable PNG or JPEG image"),
    (_png(RGB)[:60], "image.encoded could not be decoded"),
    (_png(np.zeros((4, 4), np.uint16)), ": only 8-bit images are supported"),
    (_png_header_only(0, 5), "image.encoded"),
    (b"x" * 1_000_001, "image.encoded has 1000001 bytes, more than the maximum of 1000000"),
    (RawPixels(b"\0" * 10, 2, 2, 3), "image.raw.pixels has 10 bytes but 2x2x3 needs exactly 12"),
    (RawPixels(b"\0" * 8, 2, 2, 2), "image.raw.channels is 2: supported are 1 (grey), 3 (RGB), 4 (RGBA)"),
    (RawPixels(b"", 0, 4, 3), "image.raw is 0x4: height and width must be at least 1"),
    (RawPixels(b"\0" * 3, 1, 5000, 3), "image.raw is 1x5000: a side exceeds the maximum of 1000"),
    (RawPixels(b"\0" * 3, 600, 600, 3), "image.raw is 600x600 = 360000 pixels, more than the maximum of 250000"),
])
async def test_bad_images_are_invalid_argument(setup, image, message) -> None:
    handler, _, _ = setup
    with pytest.raises(InvalidArgument) as err:
        await _segment(handler, image)
    assert message in err.value.message


async def test_unknown_mask_encoding_is_rejected(setup) -> None:
    handler, _, _ = setup
    with pytest.raises(InvalidArgument, match="mask_encoding 'enum value 7' is unknown"):
        await _segment(handler, _png(RGB), encoding="enum value 7")


async def test_metrics_record_layers_and_gflops_per_effort_mode(setup) -> None:
    handler, _, metrics = setup
    await _segment(handler, _png(RGB))
    await _segment(handler, _png(RGB), Effort("exit_layer", 2))
    registry = metrics.registry
    assert registry.get_sample_value("infersuite_segmentation_encoder_layers_sum", {"effort": "auto"}) == 4
    assert registry.get_sample_value("infersuite_segmentation_encoder_layers_sum", {"effort": "exit_layer"}) == 2
    assert registry.get_sample_value("infersuite_segmentation_gflops_count", {"effort": "auto"}) == 1
