"""Your own images for the split-computing family: an ImageFolder layout, one folder per class.

    my_images/cat/001.jpg, my_images/cat/002.png, my_images/dog/...            (split here, stratified)
    my_images/train/cat/..., my_images/val/cat/..., my_images/test/cat/...     (your splits; val optional)

Class names are the folder names, sorted (class index = position, as torchvision's ImageFolder). Files
are taken by suffix (.png .jpg .jpeg .webp .bmp .gif .tif .tiff, any case); other files and hidden
entries are skipped and counted. Images of any size and mode are fitted to the model's square input
by the family's one policy (infersuite/services/splitcompute/imaging.py: RGB, shorter side to the size, centre
crop), which the edge SDK applies too (`fit=True`). Without your own splits, each class is split by
`seed`: `test_share` and `valid_share` of its images (at least one each), the rest for training; a
class needs 3 images. Validation picks the teacher's epoch and the default beta; test is only reported.

Refused with a message naming the cause: a missing folder, fewer than 2 classes, a class with too few
images, a class in val/test that train lacks, an unreadable or oversized image (by file), an image side
that is not a multiple of 8 (the latent is 1/8 of the input), and a data set over `max_bytes` once
decoded (checked before decoding).

    python -m models.splitcompute.user_data example DIR                      # the synthetic world as a folder
    python -m models.splitcompute.user_data digits DIR                       # real images: scikit-learn's digits
    python -m models.splitcompute.user_data export RUN --repository DIR      # a finished run, through the
        [--no-quantize] [--report quality.md]                                # quantization gate (docs/
                                                                             # splitcompute_own_data.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from infersuite.services.splitcompute.imaging import IMAGE_SUFFIXES, load_image
from models.splitcompute.data import ShapeData, ShapeDataConfig, make_shape_data

SPLIT_FOLDERS = {"train": ("train",), "valid": ("val", "valid", "validation"), "test": ("test",)}


@dataclass(frozen=True)
class ImageFolderConfig:
    path: str  # the folder (one sub-folder per class, or train/ val/ test/ holding those)
    image_size: int = 96  # the model's square input side, pixels (multiple of 8)
    valid_share: float = 0.15  # share of each class for validation when the folder has no val/
    test_share: float = 0.15  # share of each class for test when the folder has no test/
    seed: int = 0  # the split of each class
    max_bytes: int = 4 << 30  # decoded images (N x 3 x size x size) at most this many bytes
    source: str = "image_folder"  # tells a checkpoint's data config from the synthetic world's


@dataclass(frozen=True)
class FolderScan:
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[Path, int]]]  # split -> (file, class index)
    skipped: int  # entries that are not images by suffix (hidden ones not counted)
    given_splits: tuple[str, ...]  # splits the folder named itself; the others were drawn here


def _images_of(folder: Path) -> tuple[list[Path], int]:
    files, skipped = [], 0
    for entry in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in entry.relative_to(folder).parts) or not entry.is_file():
            continue
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
        else:
            skipped += 1
    return files, skipped


def _classes(folder: Path) -> list[str]:
    return [d.name for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def scan_folder(cfg: ImageFolderConfig) -> FolderScan:
    root = Path(cfg.path)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder (expected one sub-folder of images per class)")
    if cfg.image_size < 16 or cfg.image_size % 8:
        raise ValueError(f"image size {cfg.image_size}: must be a multiple of 8 and at least 16")
    if not (0 < cfg.valid_share < 1 and 0 < cfg.test_share < 1 and cfg.valid_share + cfg.test_share < 1):
        raise ValueError(f"valid and test shares must be in (0, 1) and sum below 1, got "
                         f"{cfg.valid_share}, {cfg.test_share}")
    named = {split: next((root / n for n in names if (root / n).is_dir()), None)
             for split, names in SPLIT_FOLDERS.items()}
    if named["train"] is None and (named["valid"] or named["test"]):
        raise ValueError(f"{root} has a val/ or test/ folder but no train/ folder")
    top = named["train"] or root
    class_names = tuple(_classes(top))
    if len(class_names) < 2:
        raise ValueError(f"{top}: found {len(class_names)} class folder(s) {list(class_names)}; "
                         "a classifier needs at least 2 (one sub-folder of images per class)")
    index = {name: i for i, name in enumerate(class_names)}
    skipped = 0
    per_split: dict[str, dict[str, list[Path]]] = {}
    for split, folder in (("train", top), ("valid", named["valid"]), ("test", named["test"])):
        if folder is None:
            continue
        extra = sorted(set(_classes(folder)) - set(class_names))
        if extra:
            raise ValueError(f"{folder}: class folder(s) {extra} are not among the training classes "
                             f"{list(class_names)}")
        per_split[split] = {}
        for name in class_names:
            found, skip = _images_of(folder / name) if (folder / name).is_dir() else ([], 0)
            per_split[split][name], skipped = found, skipped + skip
    rng = np.random.default_rng(cfg.seed)
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "valid": [], "test": []}
    for name in class_names:
        pool = list(per_split["train"][name])
        drawn = [s for s in ("test", "valid") if s not in per_split]
        need = 1 + len(drawn)
        if len(pool) < need:
            raise ValueError(f"class {name!r} has {len(pool)} training image(s); it needs at least {need} "
                             f"(one for training and one for each of {drawn} drawn from it)" if drawn else
                             f"class {name!r} has no training images")
        order = [pool[i] for i in rng.permutation(len(pool))]
        for split in drawn:
            share = cfg.test_share if split == "test" else cfg.valid_share
            take = min(max(1, round(len(pool) * share)), len(order) - 1)
            files[split] += [(f, index[name]) for f in order[:take]]
            order = order[take:]
        files["train"] += [(f, index[name]) for f in sorted(order)]
        for split in set(per_split) - {"train"}:
            files[split] += [(f, index[name]) for f in per_split[split][name]]
    for split in ("valid", "test"):
        if not files[split]:
            raise ValueError(f"the {split} split of {root} holds no images")
    return FolderScan(class_names, files, skipped, tuple(s for s in ("valid", "test") if s in per_split))


def load_image_folder(cfg: ImageFolderConfig, progress: bool = False) -> ShapeData:
    """The folder's images fitted to `cfg.image_size`, as the family's data set (class names included)."""
    scan = scan_folder(cfg)
    entries = [(split, f, label) for split in ("train", "valid", "test") for f, label in scan.files[split]]
    need = len(entries) * 3 * cfg.image_size ** 2
    if need > cfg.max_bytes:
        raise ValueError(f"{len(entries)} images at {cfg.image_size} px take {need / 2**30:.1f} GiB decoded; "
                         f"the limit is {cfg.max_bytes / 2**30:.1f} GiB (use fewer images or a smaller size)")
    images = np.empty((len(entries), 3, cfg.image_size, cfg.image_size), np.uint8)
    for row, (_, path, _) in enumerate(tqdm(entries, desc="images", unit="img", disable=not progress or None)):
        images[row] = load_image(path, cfg.image_size)
    rows = {split: np.array([i for i, e in enumerate(entries) if e[0] == split], np.int64)
            for split in ("train", "valid", "test")}
    labels = np.array([label for _, _, label in entries], np.int64)
    return ShapeData(cfg, images, labels, rows["train"], rows["valid"], rows["test"],  # type: ignore[arg-type]
                     class_names=scan.class_names)


def describe(data: ShapeData) -> str:
    """One line: images per split and class count (for logs and reports)."""
    counts = ", ".join(f"{split} {len(getattr(data, split))}" for split in ("train", "valid", "test"))
    return f"{len(data.labels)} images of {len(data.class_names)} classes ({counts})"


def load_data(cfg: object, progress: bool = False) -> ShapeData:
    """The data set a config names: a user's image folder, or the synthetic world."""
    if isinstance(cfg, ImageFolderConfig):
        return load_image_folder(cfg, progress)
    if isinstance(cfg, ShapeDataConfig):
        return make_shape_data(cfg)
    raise TypeError(f"not a splitcompute data config: {cfg!r}")


def data_config_from_dict(config: dict) -> ImageFolderConfig | ShapeDataConfig:
    """A checkpoint's recorded data config (asdict of either kind) -> the config."""
    if config.get("source") == "image_folder":
        return ImageFolderConfig(**config)
    return ShapeDataConfig(**config)


def write_example_folder(out: Path, per_class: int = 150, seed: int = 11) -> Path:
    """The synthetic world written as a user's image folder: one folder per class (the grating classes of
    models/splitcompute/data.py), images of mixed sizes (isotropic scale 1-1.6 of a 90-120 px crop, so a
    grating keeps its orientation) saved as PNG or JPEG (quality 95). Known labels, never seen by the
    default models (its own seed)."""
    from PIL import Image

    from models.splitcompute.data import CLASS_NAMES, render

    cfg = ShapeDataConfig(image_size=120, seed=seed)  # the renderer needs a multiple of 6
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASS_NAMES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = render(rng, cfg, label).transpose(1, 2, 0)  # (120, 120, 3)
            w, h = (int(v) for v in rng.integers(90, 121, 2))
            left, top = int(rng.integers(0, 121 - w)), int(rng.integers(0, 121 - h))
            scale = float(rng.uniform(1.0, 1.6))
            crop = Image.fromarray(image[top:top + h, left:left + w])
            crop = crop.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
            if i % 2:
                crop.save(folder / f"{i:04d}.jpg", quality=95)
            else:
                crop.save(folder / f"{i:04d}.png")
    return out


DIGITS_SOURCE = ("scikit-learn's bundled copy of the UCI Optical Recognition of Handwritten Digits test set "
                 "(sklearn.datasets.load_digits: 1,797 8x8 grey images of digits written by 13 people, 10 classes; "
                 "Alpaydin and Kaynak, 1998; licence CC BY 4.0, shipped in the scikit-learn wheel, BSD-3-Clause), "
                 "written as 8-bit PNG, one folder per digit")


def write_digits_folder(out: Path) -> Path:
    """Real handwritten digits that ship inside scikit-learn (DIGITS_SOURCE; nothing is downloaded) as an image
    folder: <out>/<digit>/<index>.png, grey levels 0-16 scaled to 0-255, 8x8 as recorded (the family fits
    every image to the model's input)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{index:04d}.png")
    return out


def export_trained(run: Path, repository: Path, command: str, quantize: bool = True,
                   report: Path | None = None) -> dict[str, Any]:
    """A finished training run's default student (models.splitcompute.train.run's --out; a run that did not
    finish is refused before anything is written) exported into `repository` as the default models are,
    then, unless `quantize` is False, the quantization gate on the user's splits
    (exporters/splitcompute_user_quant.py) -> {"checkpoint", "exported", "quantization_gate"}; `report`
    (e.g. quality.md) gets the gate's section, in place of an earlier one."""
    from exporters.splitcompute_user_quant import export_user_model, render_gate, write_gate_section

    result = export_user_model(run, repository, command, quantize)
    if report is not None:
        write_gate_section(report, render_gate(result["quantization_gate"], "--no-quantize"))
    return result


def main(argv: list[str] | None = None) -> None:
    """`python -m models.splitcompute.user_data example DIR`: writes the example image folder;
    `python -m models.splitcompute.user_data export RUN --repository DIR [--no-quantize] [--report FILE]`:
    exports a finished run's default student through the quantization gate."""
    import argparse
    import sys

    from exporters.splitcompute_user_quant import UnfinishedTraining

    parser = argparse.ArgumentParser(prog="python -m models.splitcompute.user_data", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    example = commands.add_parser("example", help="write the synthetic world as an image folder")
    example.add_argument("out", type=Path)
    example.add_argument("--per-class", type=int, default=150)
    example.add_argument("--seed", type=int, default=11)
    digits = commands.add_parser("digits", help="write scikit-learn's bundled handwritten digits as an image folder")
    digits.add_argument("out", type=Path)
    export = commands.add_parser("export", help="export a finished run's default student through the gate")
    export.add_argument("run", type=Path, help="a training run's folder (summary.json, teacher.pt, student_beta*.pt; "
                                               "make train-splitcompute: artifacts/splitcompute-user/seed0)")
    export.add_argument("--repository", type=Path, required=True, help="the model repository to export into")
    export.add_argument("--no-quantize", action="store_true",
                        help="skip the quantization gate (the fp32 models alone; an unfinished run is still refused)")
    export.add_argument("--report", type=Path, default=None, help="a Markdown report to put the gate's section into")
    args = parser.parse_args(argv)
    if args.command == "example":
        write_example_folder(args.out, args.per_class, args.seed)
        print(f"wrote {args.per_class} images per class into {args.out}")
        return
    if args.command == "digits":
        write_digits_folder(args.out)
        print(f"wrote {DIGITS_SOURCE} into {args.out}")
        return
    command = "python -m models.splitcompute.user_data " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        result = export_trained(args.run, args.repository, command, not args.no_quantize, args.report)
    except (UnfinishedTraining, ValueError) as exc:  # the run's or the data's fault: one line, no traceback
        raise SystemExit(f"error: {exc}") from None
    print(f"exported {', '.join(result['exported'])} into {args.repository}: "
          f"make serve SERVE_REPOSITORY={args.repository}")
    if result["quantization_gate"] is not None:
        fp32 = result["quantization_gate"]["fp32"]
        print(f"quantization gate: no recipe ran (the default family has none); served-path test accuracy "
              f"{fp32['test_accuracy']:.4f} on {fp32['test_images']} images, {fp32['mean_frame_bytes']:.1f} bytes "
              "per frame")


if __name__ == "__main__":
    main()
