"""A user's labelled images for segmentation: the layouts, the splits, the service's resize policy, the
ignore index in the metrics, and the refusals that name their cause."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infersuite.services.segmentation.imaging import mask_to_size, to_model_input
from models.segmentation.data import SceneConfig
from models.segmentation.metrics import IGNORE_LABEL, confusion, mean_iou, per_image_miou
from models.segmentation.user_data import (
    LabelMapConfig,
    data_config_from_dict,
    load_label_maps,
    scan_label_maps,
    write_example,
)

CLASSES = "sky\nroad\ncar\nignore_index: 200\n"


def _pair(root: Path, sub: str, name: str, size: tuple[int, int] = (40, 30), value: int = 1,
          suffix: str = "png") -> None:
    """One image (width, height) and its label map: class `value` in the middle, 200 (ignored) on the top row."""
    (root / "images" / sub).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / sub).mkdir(parents=True, exist_ok=True)
    width, height = size
    pixels = np.random.default_rng(len(name)).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / sub / f"{name}.{suffix}")
    labels = np.zeros((height, width), np.uint8)
    labels[height // 4: -height // 4, width // 4: -width // 4] = value
    labels[0] = 200
    Image.fromarray(labels).save(root / "annotations" / sub / f"{name}.png")


def _folder(root: Path, n: int = 10, classes: str = CLASSES) -> Path:
    for i in range(n):
        _pair(root, "", f"img{i:02d}", (40 + 4 * i, 30 + 2 * i), value=1 + i % 2, suffix="jpg" if i % 2 else "png")
    (root / "classes.txt").write_text(classes)
    return root


def _refusal(cfg: LabelMapConfig) -> str:
    with pytest.raises(ValueError) as caught:
        load_label_maps(cfg)
    return str(caught.value)


def test_a_flat_folder_is_split_by_the_seed_with_the_stated_shares(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=20)
    (root / "images" / "notes.txt").write_text("not an image")
    scan = scan_label_maps(LabelMapConfig(str(root)))
    assert scan.classes.names == ("sky", "road", "car") and scan.classes.ignore_index == 200
    assert scan.skipped == 1 and scan.given_splits == ()
    assert {s: len(p) for s, p in scan.pairs.items()} == {"train": 15, "valid": 2, "test": 3}  # 10% and 15%
    every = [image for pairs in scan.pairs.values() for image, _ in pairs]
    assert len(set(every)) == 20
    assert all(image.stem == label.stem for pairs in scan.pairs.values() for image, label in pairs)
    assert scan_label_maps(LabelMapConfig(str(root))).pairs == scan.pairs
    assert scan_label_maps(LabelMapConfig(str(root), seed=3)).pairs["test"] != scan.pairs["test"]


def test_loading_applies_the_services_resize_and_maps_the_ignore_index(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=6)
    data = load_label_maps(LabelMapConfig(str(root), image_size=32))
    assert data.images.shape == (6, 32, 32, 3) and data.labels.shape == (6, 32, 32)
    assert data.class_names == ("sky", "road", "car") and data.ignore_index == 200
    assert set(np.unique(data.labels)) <= {0, 1, 2, IGNORE_LABEL} and (data.labels[:, 0] == IGNORE_LABEL).all()
    row = int(data.train[0])  # rows follow the scan's order: train first
    image_path, label_path = scan_label_maps(LabelMapConfig(str(root), image_size=32)).pairs["train"][0]
    original = np.asarray(Image.open(image_path).convert("RGB"))
    served = to_model_input(original, 32)[0]  # what the service feeds the model
    assert np.allclose(data.images[row].transpose(2, 0, 1) / 255.0, served, atol=1e-6)
    raw = np.asarray(Image.open(label_path))
    want = mask_to_size(np.where(raw == 200, IGNORE_LABEL, raw).astype(np.uint8), 32, 32)
    assert np.array_equal(data.labels[row], want)


def test_ade20k_layout_shifts_labels_ignores_zero_and_tests_on_validation(tmp_path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    for i in range(6):
        _pair(root, "training", f"ADE_train_{i}", value=2)
    for i in range(2):
        _pair(root, "validation", f"ADE_val_{i}", value=1)
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n"
                                            "2\t0.1\t1\t1\tbuilding, edifice\n")
    for path in (root / "annotations").rglob("*.png"):  # the ignored top row as ADE20K's "other" (0)
        labels = np.asarray(Image.open(path)).copy()
        labels[labels == 200] = 0
        Image.fromarray(labels).save(path)
    cfg = LabelMapConfig(str(root), format="ade20k", image_size=32)
    scan = scan_label_maps(cfg)
    assert scan.classes.names == ("wall", "building") and scan.given_splits == ("test",)
    assert [p.stem for p, _ in scan.pairs["test"]] == ["ADE_val_0", "ADE_val_1"]
    assert len(scan.pairs["valid"]) == 1 and len(scan.pairs["train"]) == 5
    data = load_label_maps(cfg)
    assert set(np.unique(data.labels[data.test])) == {0, IGNORE_LABEL}  # ADE label 1 -> class 0, 0 -> ignored
    assert set(np.unique(data.labels[data.train])) == {1, IGNORE_LABEL}


def test_classes_json_and_the_default_ignore_index(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4, classes="")
    (root / "classes.txt").unlink()
    (root / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"], "ignore_index": 200}))
    assert scan_label_maps(LabelMapConfig(str(root))).classes.ignore_index == 200
    (root / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    assert "label value(s) [200]" in _refusal(LabelMapConfig(str(root)))  # default 255: 200 is no class


def test_a_checkpoints_data_config_round_trips(tmp_path) -> None:
    cfg = LabelMapConfig(str(tmp_path), format="ade20k", image_size=48, seed=2)
    assert data_config_from_dict(asdict(cfg)) == cfg
    assert data_config_from_dict(asdict(SceneConfig(n_images=7))) == SceneConfig(n_images=7)


def test_the_example_writer_gives_mixed_sizes_with_known_labels(tmp_path) -> None:
    root = write_example(tmp_path / "ex", n_images=6, seed=4)
    sizes = {Image.open(p).size for p in (root / "images").iterdir()}
    assert len(sizes) > 1 and {p.suffix for p in (root / "images").iterdir()} == {".png", ".jpg"}
    data = load_label_maps(LabelMapConfig(str(root), image_size=32))
    assert data.class_names[:2] == ("background", "disk")
    assert (data.labels == IGNORE_LABEL).any() and (data.labels == 0).any()


def test_metrics_leave_ignored_pixels_out() -> None:
    labels = np.array([[0, 1], [IGNORE_LABEL, IGNORE_LABEL]], np.uint8)
    predicted = np.array([[0, 1], [1, 0]], np.uint8)
    assert confusion(predicted, labels, 2).tolist() == [[1, 0], [0, 1]]
    assert mean_iou(confusion(predicted, labels, 2)) == 1.0
    assert per_image_miou(predicted[None], labels[None], 2).tolist() == [1.0]
    assert np.isnan(per_image_miou(predicted[None], np.full((1, 2, 2), IGNORE_LABEL, np.uint8), 2)[0])


# ---- refusals: each names the file or folder and the cause


def test_missing_folders_and_classes_file_are_named(tmp_path) -> None:
    assert "no such folder" in _refusal(LabelMapConfig(str(tmp_path / "nowhere")))
    (tmp_path / "d" / "images").mkdir(parents=True)
    message = _refusal(LabelMapConfig(str(tmp_path / "d")))
    assert "annotations" in message and "no such folder" in message
    (tmp_path / "d" / "annotations").mkdir()
    assert "no classes.txt or classes.json" in _refusal(LabelMapConfig(str(tmp_path / "d")))
    ade = _folder(tmp_path / "flat", n=4)
    assert "needs images/training" in _refusal(LabelMapConfig(str(ade), format="ade20k"))


def test_an_image_without_annotation_and_an_annotation_without_image(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4)
    (root / "annotations" / "img01.png").unlink()
    message = _refusal(LabelMapConfig(str(root)))
    assert "img01.jpg" in message and "no annotation" in message
    _pair(root, "", "img01", suffix="jpg")
    (root / "images" / "img02.png").unlink()
    message = _refusal(LabelMapConfig(str(root)))
    assert "annotations/img02.png" in message and "without an image" in message


def test_bad_labels_sizes_and_modes_are_refused_by_file(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4)
    path = root / "annotations" / "img00.png"
    labels = np.asarray(Image.open(path)).copy()
    labels[5, 5] = 7
    Image.fromarray(labels).save(path)
    message = _refusal(LabelMapConfig(str(root)))
    assert "img00.png" in message and "label value(s) [7]" in message and "0..2" in message and "200" in message
    Image.fromarray(labels[:-1]).save(path)
    message = _refusal(LabelMapConfig(str(root)))
    assert "img00.png" in message and "40x29 but its image is 40x30" in message
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
    assert "pixel mode RGB" in _refusal(LabelMapConfig(str(root)))


def test_classes_files_that_cannot_work_are_refused(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4, classes="sky\nroad\nignore_index: 1\n")
    assert "ignore_index 1 is also the index of class 'road'" in _refusal(LabelMapConfig(str(root)))
    (root / "classes.txt").write_text("sky\nsky\n")
    assert "['sky'] appear more than once" in _refusal(LabelMapConfig(str(root)))
    (root / "classes.txt").write_text("sky\n")
    assert "1 class name(s)" in _refusal(LabelMapConfig(str(root)))


def test_unreadable_oversized_and_unserved_images_are_refused_before_decoding(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4)
    message = _refusal(LabelMapConfig(str(root), max_pixels=1000))  # 40x30 and up: > 1,000 pixels, from the header
    assert re.search(r"images/img0\d\.(png|jpg): ", message) and "more than the maximum of 1000 pixels" in message
    message = _refusal(LabelMapConfig(str(root), max_file_bytes=100))
    assert re.search(r"images/img0\d\.(png|jpg): [\d,]+ bytes; at most 100 are accepted", message)
    message = _refusal(LabelMapConfig(str(root), image_size=32, max_bytes=4 * 32 * 32 * 3))
    assert "4 images at 32 px take" in message and "limit" in message
    for image in (root / "images").iterdir():
        image.write_bytes(b"not a png")
    message = _refusal(LabelMapConfig(str(root)))
    assert re.search(r"images/img0\d\.(png|jpg): the image is not a decodable PNG or JPEG", message)
    Image.new("RGB", (40, 30)).save(root / "images" / "img00.webp")
    message = _refusal(LabelMapConfig(str(root)))
    assert "img00.webp" in message and "PNG and JPEG only" in message


def test_two_images_with_one_name_and_bad_settings(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=4)
    Image.new("RGB", (40, 30)).save(root / "images" / "img00.jpg")
    assert "another image is also named 'img00'" in _refusal(LabelMapConfig(str(root)))
    assert "multiple of 16" in _refusal(LabelMapConfig(str(root), image_size=40))
    assert "unknown" in _refusal(LabelMapConfig(str(root), format="voc"))
    tiny = _folder(tmp_path / "tiny", n=2)
    assert "at least 3 are needed" in _refusal(LabelMapConfig(str(tiny)))
