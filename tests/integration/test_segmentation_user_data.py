"""Segmentation on a user's own labelled images, end to end: a tiny folder (mixed sizes, two classes on a
background, ignored outlines) -> `python -m models.segmentation.train --data --repository` (seconds) -> the
report -> a real server on port 0 -> an image of a size the model never takes, answered at its own size in
the user's classes, equal to the torch model behind the service's resize policy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infersuite.services.segmentation import SegmentationService, SegmentationSettings
from infersuite.services.segmentation.client import SegmentationClient
from infersuite.services.segmentation.imaging import mask_to_size, to_model_input
from models.segmentation.train import load_checkpoint, main
from tests.fixtures import serving

pytestmark = pytest.mark.integration
CLASSES = ["sky", "lake", "boat"]  # indices 0, 1, 2; the outlines carry 250, the ignore index
COLOURS = {1: (30, 60, 220), 2: (220, 40, 40)}
SIZE = 32
TINY = ["n_layers=3", "d_model=32", "n_heads=2", "ffn_dim=64", "head_dim=16", "gate_hidden=16", "batch_size=8",
        "gate_epochs=10"]


def _scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey sky with a blue lake rectangle and a red boat rectangle; outlines labelled 250 (ignored)."""
    image = np.full((height, width, 3), 150, np.float64)
    labels = np.zeros((height, width), np.uint8)
    for k, colour in COLOURS.items():
        w, h = int(width * rng.uniform(0.25, 0.45)), int(height * rng.uniform(0.25, 0.45))
        left = int(rng.integers(0, width - w)) if k == 1 else width - w - int(rng.integers(0, width // 8 + 1))
        top = int(rng.integers(0, height - h))
        image[top:top + h, left:left + w], labels[top:top + h, left:left + w] = colour, k
        labels[top, left:left + w] = labels[top + h - 1, left:left + w] = 250
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg-user")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):
        image, labels = _scene(rng, int(rng.integers(40, 120)), int(rng.integers(40, 120)))
        Image.fromarray(image).save(data / "images" / f"photo{i:02d}.{'jpg' if i % 3 == 0 else 'png'}", quality=95)
        Image.fromarray(labels).save(data / "annotations" / f"photo{i:02d}.png")
    (data / "classes.txt").write_text("\n".join(CLASSES) + "\nignore_index: 250\n")
    # The quantization gate has its own tests (tests/unit/models/test_segmentation_user_quant.py).
    main(["--data", str(data), "--image-size", str(SIZE), "--out", str(root / "artifacts"), "--repository",
          str(root / "repo"), "--epochs", "10", "--no-progress", "--no-quantize",
          *[a for s in TINY for a in ("--set", s)]])
    return root


def test_the_model_is_sized_to_the_data_and_the_report_states_its_figures(trained) -> None:
    model, checkpoint = load_checkpoint(trained / "artifacts" / "eco_m2f.pt")
    assert model.config.n_classes == 3 and model.config.image_size == SIZE
    assert checkpoint["class_names"] == CLASSES and checkpoint["ignore_index"] == 250
    assert checkpoint["scene_config"]["source"] == "label_maps"
    figures = json.loads((trained / "artifacts" / "quality.figures.json").read_text())
    assert figures["images"] == 6 and figures["classes"] == CLASSES and figures["ignored_pixels"] > 0
    assert figures["miou"] >= 0.6, figures  # flat colours: a model that learns them
    report = (trained / "artifacts" / "quality.md").read_text()
    assert f"mean IoU: **{100 * figures['miou']:.1f}%**" in report and "| boat |" in report
    meta = json.loads((trained / "repo" / "segmentation-backbone-fp32" / "1" / "meta.json").read_text())
    assert meta["pipeline"]["class_names"] == CLASSES and meta["pipeline"]["ignore_index"] == 250
    assert meta["pipeline"]["image_size"] == SIZE and meta["pipeline"]["data_format"] == "folder"


async def test_the_service_answers_any_size_in_the_users_classes(trained) -> None:
    image, _ = _scene(np.random.default_rng(77), 90, 53)  # fresh, and not the model's size
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    service = SegmentationService(SegmentationSettings())
    async with serving([service], trained / "repo", intra_op_threads=1, ready_timeout_s=120) as served, \
            SegmentationClient(f"127.0.0.1:{served.port}", timeout_s=30) as client:
        answer = await client.segment(buffer.getvalue())
    assert answer.mask.shape == (53, 90) and answer.class_names == CLASSES
    model, _ = load_checkpoint(trained / "artifacts" / "eco_m2f.pt")
    with torch.no_grad():
        logits, exits = model(torch.from_numpy(to_model_input(image, SIZE)))
    want = mask_to_size(logits[0].argmax(0).numpy().astype(np.uint8), 53, 90)
    assert answer.exit_layer == int(exits[0]) and np.mean(answer.mask == want) >= 0.999


def test_bad_data_ends_in_one_error_line(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit) as stopped:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert str(stopped.value).startswith("error: ") and "annotations" in str(stopped.value)
    assert "\n" not in str(stopped.value)
