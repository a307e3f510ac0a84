"""A user's image folder for split computing: layouts, splits, and the refusals that name their cause."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.splitcompute.data import ShapeDataConfig
from models.splitcompute.user_data import (
    ImageFolderConfig,
    data_config_from_dict,
    load_image_folder,
    scan_folder,
)


def _folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (30, 20)) -> Path:
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, (40 * c, 255 - 40 * c, i)).save(root / name / f"{i}.{'png' if i % 2 else 'JPG'}")
    return root


def test_class_folders_are_split_per_class_by_the_seed(tmp_path) -> None:
    root = _folder(tmp_path / "imgs", {"cat": 20, "dog": 10})
    (root / "cat" / "README.txt").write_text("not an image")
    (root / "dog" / ".thumbs").mkdir()
    scan = scan_folder(ImageFolderConfig(str(root), 16, valid_share=0.2, test_share=0.1))
    assert scan.class_names == ("cat", "dog") and scan.skipped == 1 and scan.given_splits == ()
    per = {split: np.bincount([label for _, label in files], minlength=2) for split, files in scan.files.items()}
    assert per["test"].tolist() == [2, 1] and per["valid"].tolist() == [4, 2] and per["train"].tolist() == [14, 7]
    every = [f for files in scan.files.values() for f, _ in files]
    assert len(every) == len(set(every)) == 30  # no image in two splits
    again = scan_folder(ImageFolderConfig(str(root), 16, valid_share=0.2, test_share=0.1))
    assert again.files == scan.files
    other = scan_folder(ImageFolderConfig(str(root), 16, valid_share=0.2, test_share=0.1, seed=1))
    assert other.files["test"] != scan.files["test"]


def test_given_train_and_test_folders_are_kept_and_validation_is_drawn_from_train(tmp_path) -> None:
    _folder(tmp_path / "imgs" / "train", {"a": 10, "b": 10})
    _folder(tmp_path / "imgs" / "test", {"a": 3, "b": 2})
    scan = scan_folder(ImageFolderConfig(str(tmp_path / "imgs"), 16))
    assert scan.given_splits == ("test",)
    assert all("/test/" in str(f) for f, _ in scan.files["test"]) and len(scan.files["test"]) == 5
    assert all("/train/" in str(f) for f, _ in scan.files["valid"]) and len(scan.files["valid"]) == 4


def test_the_data_set_carries_the_folder_class_names_and_fitted_images(tmp_path) -> None:
    root = _folder(tmp_path / "imgs", {"x": 6, "y": 6}, size=(50, 30))
    data = load_image_folder(ImageFolderConfig(str(root), 16))
    assert data.images.shape == (12, 3, 16, 16) and data.class_names == ("x", "y")
    assert sorted(np.concatenate([data.train, data.valid, data.test]).tolist()) == list(range(12))
    assert data.images[data.labels == 0][:, 1].mean() == 255  # class x is green (40 * 0, 255, i)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "no such folder"),
    (lambda root: _folder(root, {"only": 5}), r"found 1 class folder\(s\) \['only'\]"),
    (lambda root: _folder(root, {"a": 5, "b": 2}), "class 'b' has 2 training image"),
    (lambda root: (_folder(root / "train", {"a": 5, "b": 5}), _folder(root / "test", {"a": 1, "z": 1})),
     r"class folder\(s\) \['z'\] are not among the training classes"),
    (lambda root: _folder(root / "test", {"a": 5, "b": 5}), "no train/ folder"),
])
def test_bad_folders_are_refused_naming_the_cause(tmp_path, make, message) -> None:
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(ValueError, match=message):
        scan_folder(ImageFolderConfig(str(root), 16))


def test_sizes_shares_and_the_memory_bound_are_checked_before_decoding(tmp_path) -> None:
    root = _folder(tmp_path / "imgs", {"a": 5, "b": 5})
    with pytest.raises(ValueError, match="multiple of 8"):
        scan_folder(ImageFolderConfig(str(root), 20))
    with pytest.raises(ValueError, match="sum below 1"):
        scan_folder(ImageFolderConfig(str(root), 16, valid_share=0.5, test_share=0.5))
    with pytest.raises(ValueError, match=r"10 images at 16 px take .* the limit"):
        load_image_folder(ImageFolderConfig(str(root), 16, max_bytes=10 * 3 * 16 * 16 - 1))


def test_a_broken_image_is_named(tmp_path) -> None:
    root = _folder(tmp_path / "imgs", {"a": 5, "b": 5})
    (root / "b" / "3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"3\.png: not a readable image"):
        load_image_folder(ImageFolderConfig(str(root), 16))


def test_a_checkpoints_data_config_round_trips_for_both_sources(tmp_path) -> None:
    folder = ImageFolderConfig(str(tmp_path), 32, seed=3)
    assert data_config_from_dict(asdict(folder)) == folder
    assert data_config_from_dict(asdict(ShapeDataConfig(n_train=5))) == ShapeDataConfig(n_train=5)
