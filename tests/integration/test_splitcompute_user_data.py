"""Split computing on a user's own image folder, end to end: train (tiny), export, serve on a real port,
classify images of any size from the edge SDK with fit=True; and the rate-accuracy report command."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.splitcompute import user_data as report
from exporters.splitcompute import export_splitcompute
from infersuite.services.splitcompute import SplitComputeService
from infersuite.services.splitcompute.edge import EdgeDevice, EdgeEncoder
from infersuite.services.splitcompute.imaging import load_image
from infersuite.services.splitcompute.settings import SplitComputeSettings
from models.splitcompute.data import to_float
from models.splitcompute.train import TrainConfig, load_student, quantize, run, single_thread
from models.splitcompute.user_data import ImageFolderConfig
from tests.fixtures import serving

pytestmark = pytest.mark.integration
COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}
SIZE = 32


def _photo(rng: np.random.Generator, colour: tuple[int, int, int]) -> Image.Image:
    """A noisy patch of the class colour on a random grey background, any size and aspect."""
    w, h = (int(v) for v in rng.integers(24, 150, 2))
    pixels = np.full((h, w, 3), rng.integers(60, 200), np.float64)
    top, left = int(h * 0.2), int(w * 0.2)
    pixels[top:h - top, left:w - left] = colour
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours") / "images"
    rng = np.random.default_rng(5)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(40):
            photo = _photo(rng, colour)
            if i % 4 == 1:
                photo = photo.convert("RGBA")  # modes a user's folder holds: all fitted to RGB
            photo.save(root / name / f"{i:03d}.{'jpg' if i % 4 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def trained(colour_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("sc-user")
    cfg = TrainConfig(teacher_epochs=4, stage1_epochs=2, stage2_epochs=2, batch_size=16, betas=(0.04,))
    summary = run(out / "artifacts", ImageFolderConfig(str(colour_folder), SIZE), cfg, log=False)
    written = export_splitcompute(out / "artifacts" / summary["default"], out / "repo")
    return summary, out, written


def test_training_sizes_the_model_to_the_folder_and_learns_it(trained) -> None:
    summary, _, written = trained
    assert summary["class_names"] == ["blue", "green", "red"] and summary["data"].startswith("120 images of 3 classes")
    assert summary["teacher"]["test_accuracy"] >= 0.9, summary["teacher"]  # colour is easy: a model that learns
    meta = json.loads((written["encoder"] / "meta.json").read_text())
    assert meta["class_names"] == ["blue", "green", "red"] and meta["image_size"] == SIZE
    assert meta["codec"]["latent_shape"][1:] == [SIZE // 8, SIZE // 8]


async def test_the_edge_sdk_fits_any_image_and_the_server_names_the_users_classes(trained, colour_folder,
                                                                                  tmp_path) -> None:
    summary, out, written = trained
    rng = np.random.default_rng(99)  # fresh photos, never trained on
    photos = {name: [np.asarray(_photo(rng, colour)) for _ in range(5)] for name, colour in COLOURS.items()}
    service = SplitComputeService(SplitComputeSettings())
    async with serving([service], out / "repo") as served:
        def run_device() -> dict[str, list[str]]:
            with EdgeDevice(written["encoder"], f"127.0.0.1:{served.port}") as device:
                with pytest.raises(ValueError, match=f"the encoder takes {SIZE}x{SIZE} RGB"):
                    device.classify(photos["red"][0])  # without fit, only the model's size
                return {name: [device.classify(p, fit=True).top_class_name for p in ps]
                        for name, ps in photos.items()}

        named = await asyncio.to_thread(run_device)
    # the served answers are the torch pipeline's on the same fitted images
    student, _ = load_student(out / "artifacts" / summary["default"])
    radius = EdgeEncoder(written["encoder"]).codec.radius
    for name, ps in photos.items():
        path = tmp_path / f"{name}.png"
        fitted = []
        for p in ps:
            Image.fromarray(p).save(path)
            fitted.append(load_image(path, SIZE))
        with torch.no_grad(), single_thread():
            latent = quantize(student.encoder(torch.from_numpy(to_float(np.stack(fitted)))), radius)
            want = student.tail(student.decoder(latent)).argmax(dim=1).numpy()
        assert named[name] == [summary["class_names"][k] for k in want], (name, named[name])
    # the tiny student (2 epochs per stage) beats chance (5 of 15) on fresh photos: it learned the user's classes
    assert sum(got == name for name, gots in named.items() for got in gots) >= 7, named


def test_the_report_command_compares_against_jpeg_and_webp_over_seeds(colour_folder, tmp_path) -> None:
    figures = report.main(["--data", str(colour_folder), "--out", str(tmp_path / "runs"), "--report",
                           str(tmp_path / "quality.md"), "--seeds", "2", "--image-size", str(SIZE),
                           "--teacher-epochs", "3", "--student-epochs", "1", "--betas", "0.02", "0.3",
                           "--resamples", "300"])
    text = (tmp_path / "quality.md").read_text()
    assert "## The claim: fewer bytes" in text and "| 1 |" in text and "(2 x 18)" in text
    for codec in ("JPEG 4:2:0", "JPEG 4:4:4", "WebP"):
        c = figures["comparison"][codec]
        assert len(c["matched_settings"]) == 2 and c["bytes_saved_full"]["seeds"] == 2
        low, high = c["accuracy_difference"]["low"], c["accuracy_difference"]["high"]
        assert -1 <= low <= c["accuracy_difference"]["estimate"] <= high <= 1
    assert json.loads((tmp_path / "quality.json").read_text())["class_names"] == ["blue", "green", "red"]
