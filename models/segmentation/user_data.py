"""Your own labelled images for the segmentation family: an images folder plus a label-map folder.

    DIR/images/<name>.png|.jpg|.jpeg          the photos (any size; what the service decodes: PNG or JPEG)
    DIR/annotations/<name>.png                one byte per pixel (mode L or P): the class index of each pixel
    DIR/classes.txt                           one class name per line (class index = position among the name
                                              lines; blank and # lines skipped), and optionally `ignore_index: N`
    or DIR/classes.json                       {"classes": ["road", ...], "ignore_index": 255}

The ignore index (default 255) marks pixels that count for no class: the loss and every metric skip them.
It must lie outside 0..n-1 (so at most 255 classes). `--format ade20k` reads the ADE20K scene-parsing layout
(images/training, images/validation, annotations/training, annotations/validation; the class names from
classes.txt or ADE20K's objectInfo150.txt/.csv): there label 0 is "other" and is the ignore index, and label
k >= 1 is class k - 1 (served class ids are ADE20K's labels minus 1).

Splits: with images/training (+ annotations/training), `validation` is the TEST split (ADE20K reports on it)
and validation is drawn from training; with test/ too, all three are the folder's own. Without split
folders every image is drawn by `seed`: `test_share` (15%) for test and `valid_share` (10%) for validation,
at least one image each, the rest for training. Validation picks the epoch; test is only reported.

Resize policy = the service's (infersuite/services/segmentation/imaging.py, whose functions are used here): the image
bilinear to the model's square side, the label map nearest to it; at serving the mask goes back to the
image's own size by nearest. An image is decoded as the service decodes it (RGB, 8-bit modes only).

Refused with a message naming the file and the cause: a missing folder or classes file, an image without its
annotation or an annotation without its image, two images with one name, an image type the service cannot
decode, an unreadable file, an image over `max_pixels` (read from the header, before decoding) or
`max_file_bytes`, an annotation that is not one byte per pixel or whose size differs from its image's (from
the header), a label value that is neither a class nor the ignore index, and a data set whose decoded arrays
would exceed `max_bytes` (checked before decoding).

Export (`export_user_model`, `python -m models.segmentation.user_data export CHECKPOINT --repository DIR`): the
staged fp32 graphs, then the quantization gate on the validation (calibration) and test (quality) splits
(exporters/segmentation_user_quant.py; `--no-quantize` skips it); an unfinished checkpoint is refused first.
docs/segmentation_own_data.md describes the whole path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from infersuite.services.runtime.errors import InvalidArgument
from infersuite.services.segmentation.imaging import ImageLimits, decode_image, mask_to_size, to_model_input
from models.segmentation.data import CLASS_NAMES, SceneConfig, Scenes, make_scene, make_scenes
from models.segmentation.metrics import IGNORE_LABEL

FORMATS = ("folder", "ade20k")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what infersuite/services/segmentation/imaging.py decodes
UNSERVED_SUFFIXES = (".webp", ".bmp", ".gif", ".tif", ".tiff")  # images the service would refuse
SPLIT_FOLDERS = {"train": ("training", "train"), "valid": ("validation", "val"), "test": ("test", "testing")}
SPLITS = ("train", "valid", "test")
LABEL_MODES = ("L", "P")  # one byte per pixel: grey or palette indices (not the palette's colours)


@dataclass(frozen=True)
class LabelMapConfig:
    path: str  # DIR holding images/, annotations/ and the classes file
    format: str = "folder"  # "folder" or "ade20k" (label 0 ignored, label k -> class k - 1)
    image_size: int = 64  # the model's square input side, pixels (multiple of 16)
    valid_share: float = 0.1  # share of training images drawn for validation (no validation folder of its own)
    test_share: float = 0.15  # share of images drawn for test when there are no split folders
    seed: int = 0  # the drawn split
    max_pixels: int = 50_000_000  # width x height of one image at most (from the header)
    max_file_bytes: int = 64 << 20  # one image or annotation file at most this many bytes
    max_bytes: int = 4 << 30  # decoded data set (N x size x size x (3 + 1) bytes) at most
    source: str = "label_maps"  # tells a checkpoint's data config from the synthetic scenes'


@dataclass(frozen=True)
class Classes:
    names: tuple[str, ...]
    ignore_index: int  # the value in the annotation files that marks ignored pixels
    first_label: int  # the file value of class 0 (1 in ADE20K, whose 0 is "other")
    lookup: np.ndarray = field(repr=False)  # (256,) int16: file value -> model class id, IGNORE_LABEL, or -1


@dataclass(frozen=True)
class LabelMapScan:
    classes: Classes
    pairs: dict[str, list[tuple[Path, Path]]]  # split -> (image, annotation)
    skipped: int  # files that are neither images nor annotations by suffix (hidden ones not counted)
    given_splits: tuple[str, ...]  # splits the folder named itself; the others were drawn here


@dataclass
class LabelledScenes(Scenes):
    """The user's images at the model's size, with their class names (the labels hold IGNORE_LABEL)."""

    class_names: tuple[str, ...] = ()
    ignore_index: int = 255  # the value in the user's annotation files


def _lookup(n_classes: int, ignore_index: int, offset: int) -> np.ndarray:
    table = np.full(256, -1, np.int16)
    table[offset:offset + n_classes] = np.arange(n_classes)
    table[ignore_index] = IGNORE_LABEL
    return table


def _class_lines(path: Path) -> tuple[list[str], int | None]:
    if path.suffix == ".json":
        try:
            spec = json.loads(path.read_text())
            return [str(n) for n in spec["classes"]], spec.get("ignore_index")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a classes file ({{'classes': [names], 'ignore_index': N}}): {exc}") from None
    names, ignore = [], None
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.lower().startswith("ignore_index:"):
            value = text.split(":", 1)[1].strip()
            if not value.isdigit():
                raise ValueError(f"{path}: ignore_index {value!r} is not a number in 0..255")
            ignore = int(value)
        elif text and not text.startswith("#"):
            names.append(text)
    return names, ignore


def _ade20k_names(root: Path) -> list[str] | None:
    """Class names from ADE20K's objectInfo150.txt (tab-separated) or .csv: the Name column, first synonym."""
    for path in (root / "objectInfo150.txt", root / "objectInfo150.csv"):
        if path.is_file():
            rows = [r.split("\t" if path.suffix == ".txt" else ",", 4) for r in path.read_text().splitlines()[1:]]
            return [r[-1].strip().strip('"').split(";")[0].split(",")[0].strip() for r in rows if r and r[0].strip()]
    return None


def read_classes(root: Path, fmt: str) -> Classes:
    files = [p for p in (root / "classes.json", root / "classes.txt") if p.is_file()]
    names, ignore = _class_lines(files[0]) if files else (_ade20k_names(root) if fmt == "ade20k" else None, None)
    if names is None:
        raise ValueError(f"{root}: no classes.txt or classes.json (one class name per line, index = position; "
                         "optionally a line `ignore_index: 255`)")
    where = files[0] if files else root
    if len(names) < 2:
        raise ValueError(f"{where}: {len(names)} class name(s); a segmenter needs at least 2")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: class name(s) {duplicates} appear more than once")
    if fmt == "ade20k":
        if ignore not in (None, 0):
            raise ValueError(f"{where}: ignore_index {ignore}: the ade20k format ignores label 0 (use --format folder)")
        if len(names) > 255:
            raise ValueError(f"{where}: {len(names)} classes; ADE20K label maps hold labels 1..255")
        return Classes(tuple(names), 0, 1, _lookup(len(names), 0, 1))
    ignore = 255 if ignore is None else int(ignore)
    if not 0 <= ignore <= 255:
        raise ValueError(f"{where}: ignore_index {ignore} is outside 0..255 (annotations hold one byte per pixel)")
    if ignore < len(names):
        raise ValueError(f"{where}: ignore_index {ignore} is also the index of class {names[ignore]!r} "
                         f"(classes are 0..{len(names) - 1}; the ignore index must lie outside them)")
    return Classes(tuple(names), ignore, 0, _lookup(len(names), ignore, 0))


def _images_of(folder: Path) -> tuple[dict[str, Path], int]:
    """One folder of images -> ({stem: image}, files skipped as not images)."""
    images: dict[str, Path] = {}
    skipped = 0
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        suffix = path.suffix.lower()
        if suffix in UNSERVED_SUFFIXES:
            raise ValueError(f"{path}: the segmentation service decodes PNG and JPEG only; convert it or remove it")
        if suffix not in IMAGE_SUFFIXES:
            skipped += 1
        elif path.stem in images:
            raise ValueError(f"{path}: another image is also named {path.stem!r} ({images[path.stem].name}); "
                             "an annotation names one image by its stem")
        else:
            images[path.stem] = path
    return images, skipped


def _pairs(images_dir: Path, annotations_dir: Path) -> tuple[list[tuple[Path, Path]], int]:
    if not annotations_dir.is_dir():
        raise ValueError(f"{annotations_dir}: no such folder (the label maps of {images_dir})")
    images, skipped = _images_of(images_dir)
    annotations = {p.stem: p for p in sorted(annotations_dir.iterdir())
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".png"}
    for stem, image in images.items():
        if stem not in annotations:
            raise ValueError(f"{image}: no annotation {annotations_dir / (stem + '.png')}")
    for stem, annotation in annotations.items():
        if stem not in images:
            raise ValueError(f"{annotation}: an annotation without an image {stem}.png/.jpg in {images_dir}")
    if not images:
        raise ValueError(f"{images_dir}: no images (PNG or JPEG)")
    return [(images[s], annotations[s]) for s in sorted(images)], skipped


def _split_folders(root: Path) -> dict[str, str]:
    """split -> the folder name under images/ the data set gives for it (only those present)."""
    return {split: next(n for n in names if (root / "images" / n).is_dir())
            for split, names in SPLIT_FOLDERS.items() if any((root / "images" / n).is_dir() for n in names)}


def _draw(pairs: list[tuple[Path, Path]], shares: dict[str, float], seed: int) -> dict[str, list[tuple[Path, Path]]]:
    if len(pairs) < 1 + len(shares):
        raise ValueError(f"{len(pairs)} training image(s): at least {1 + len(shares)} are needed (one for training "
                         f"and one for each of {list(shares)} drawn from them)")
    order = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
    drawn = {}
    for split, share in shares.items():
        take = min(max(1, round(len(pairs) * share)), len(order) - 1)
        drawn[split], order = sorted(order[:take]), order[take:]
    return {"train": sorted(order), **drawn}


def scan_label_maps(cfg: LabelMapConfig) -> LabelMapScan:
    root = Path(cfg.path)
    if cfg.format not in FORMATS:
        raise ValueError(f"format {cfg.format!r} is unknown (use {' or '.join(FORMATS)})")
    if cfg.image_size < 32 or cfg.image_size % 16:
        raise ValueError(f"image size {cfg.image_size}: must be a multiple of 16 and at least 32")
    if not (0 < cfg.valid_share < 1 and 0 < cfg.test_share < 1 and cfg.valid_share + cfg.test_share < 1):
        raise ValueError(f"valid and test shares must be in (0, 1) and sum below 1, got {cfg.valid_share}, "
                         f"{cfg.test_share}")
    for folder in (root, root / "images", root / "annotations"):
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder (expected {root}/images/ and {root}/annotations/)")
    named = _split_folders(root)
    if cfg.format == "ade20k" and "train" not in named:
        raise ValueError(f"{root / 'images'}: the ade20k layout needs images/training and images/validation")
    if named and "train" not in named:
        raise ValueError(f"{root / 'images'} has {sorted(named.values())} but no training/ folder")
    classes = read_classes(root, cfg.format)
    found, skipped = {}, 0
    for split, name in (named.items() if named else [("train", "")]):
        found[split], skip = _pairs(root / "images" / name, root / "annotations" / name)
        skipped += skip
    if "test" not in found and "valid" in found:
        found["test"] = found.pop("valid")  # ADE20K: its validation split is the reported one
    shares = {s: share for s, share in (("test", cfg.test_share), ("valid", cfg.valid_share)) if s not in found}
    pairs = {**found, **_draw(found["train"], shares, cfg.seed)}
    return LabelMapScan(classes, pairs, skipped, tuple(s for s in ("valid", "test") if s in found))


def _read_bytes(path: Path, cfg: LabelMapConfig) -> bytes:
    try:
        size = path.stat().st_size
        if size > cfg.max_file_bytes:
            raise ValueError(f"{path}: {size:,} bytes; at most {cfg.max_file_bytes:,} are accepted")
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: not readable ({exc.strerror or exc})") from None


def read_image(path: Path, cfg: LabelMapConfig) -> np.ndarray:
    """An image file -> (H, W, 3) uint8, decoded as the service decodes (pixels bounded from the header)."""
    limits = ImageLimits(cfg.max_file_bytes, 1 << 30, cfg.max_pixels)
    try:
        return decode_image(_read_bytes(path, cfg), limits)
    except InvalidArgument as exc:
        raise ValueError(f"{path}: {exc.message.replace('image.encoded', 'the image')}") from None


def read_label_map(path: Path, classes: Classes, shape: tuple[int, int], cfg: LabelMapConfig) -> np.ndarray:
    """An annotation PNG of an image of `shape` (H, W) -> (H, W) uint8 model class ids (IGNORE_LABEL ignored)."""
    import io

    try:
        with Image.open(io.BytesIO(_read_bytes(path, cfg)), formats=["PNG"]) as label_map:
            width, height = label_map.size  # header only: nothing decoded yet
            if (height, width) != shape:
                raise ValueError(f"{path}: {width}x{height} but its image is {shape[1]}x{shape[0]} "
                                 "(an annotation must match its image pixel for pixel)")
            if label_map.mode not in LABEL_MODES:
                raise ValueError(f"{path}: pixel mode {label_map.mode}; a label map holds one class index per "
                                 "pixel in one byte (PNG mode L or P)")
            raw = np.asarray(label_map, np.uint8)
    except ValueError:
        raise
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not a readable PNG label map ({exc})") from None
    labels = classes.lookup[raw]
    if (labels < 0).any():
        bad = np.unique(raw[labels < 0])
        first, last = classes.first_label, classes.first_label + len(classes.names) - 1
        raise ValueError(f"{path}: label value(s) {bad[:8].tolist()} are neither a class ({first}..{last}) "
                         f"nor the ignore index {classes.ignore_index}")
    return labels.astype(np.uint8)


def fit_pair(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) image and (H, W) labels -> (size, size, 3) and (size, size): the service's resize policy
    (bilinear image, nearest labels, infersuite/services/segmentation/imaging.py)."""
    fitted = np.rint(to_model_input(image, size)[0] * 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(fitted), mask_to_size(labels, size, size)


def load_label_maps(cfg: LabelMapConfig, progress: bool = False, splits: tuple[str, ...] = SPLITS) -> LabelledScenes:
    """The data set at the model's size (only `splits`; the others get no rows)."""
    scan = scan_label_maps(cfg)
    entries = [(split, pair) for split in splits for pair in scan.pairs[split]]
    need = len(entries) * 4 * cfg.image_size ** 2
    if need > cfg.max_bytes:
        raise ValueError(f"{len(entries)} images at {cfg.image_size} px take {need / 2**30:.1f} GiB decoded; the "
                         f"limit is {cfg.max_bytes / 2**30:.1f} GiB (use fewer images or a smaller --image-size)")
    size = cfg.image_size
    images = np.empty((len(entries), size, size, 3), np.uint8)
    labels = np.empty((len(entries), size, size), np.uint8)
    for row, (_, (image_path, label_path)) in enumerate(tqdm(entries, desc="images", unit="img",
                                                              disable=not progress or None)):
        image = read_image(image_path, cfg)
        images[row], labels[row] = fit_pair(image, read_label_map(label_path, scan.classes, image.shape[:2], cfg),
                                            size)
    rows = {s: np.array([i for i, e in enumerate(entries) if e[0] == s], np.int64) for s in SPLITS}
    return LabelledScenes(cfg, images, labels, np.zeros(len(entries)), rows["train"], rows["valid"],  # type: ignore[arg-type]
                          rows["test"], class_names=scan.classes.names, ignore_index=scan.classes.ignore_index)


def describe(scenes: Scenes) -> str:
    """One line: images per split and class count (for logs and reports)."""
    counts = ", ".join(f"{split} {len(getattr(scenes, split))}" for split in SPLITS)
    names = getattr(scenes, "class_names", CLASS_NAMES)
    return f"{len(scenes.images)} images of {len(names)} classes ({counts})"


def load_data(cfg: object, progress: bool = False, splits: tuple[str, ...] = SPLITS) -> Scenes:
    """The data set a config names: a user's label maps, or the synthetic scenes."""
    if isinstance(cfg, LabelMapConfig):
        return load_label_maps(cfg, progress, splits)
    if isinstance(cfg, SceneConfig):
        return make_scenes(cfg)
    raise TypeError(f"not a segmentation data config: {cfg!r}")


def data_config_from_dict(config: dict[str, Any]) -> LabelMapConfig | SceneConfig:
    """A checkpoint's recorded data config (asdict of either kind) -> the config."""
    if config.get("source") == "label_maps":
        return LabelMapConfig(**config)
    return SceneConfig(**config)


def _boundary(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a differently labelled 4-neighbour (the example's ignored outlines)."""
    edge = np.zeros(labels.shape, bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    return edge


def write_example(out: Path, n_images: int = 400, seed: int = 11) -> Path:
    """The synthetic scenes (models/segmentation/data.py, its own seed) written in the folder layout: each
    64 px scene scaled to a random size of 48-160 px per side (image bilinear, labels nearest), PNG or JPEG
    (quality 95), object outlines labelled with the ignore index 255, and classes.txt. Known ground truth,
    never seen by the default model."""
    cfg = SceneConfig(seed=seed)
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        image, labels = make_scene(cfg, float(rng.uniform()), rng)
        width, height = (int(v) for v in rng.integers(48, 161, 2))
        photo = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
        label_map = mask_to_size(np.where(_boundary(labels), 255, labels).astype(np.uint8), height, width)
        if i % 2:
            photo.save(out / "images" / f"scene{i:04d}.jpg", quality=95)
        else:
            photo.save(out / "images" / f"scene{i:04d}.png")
        Image.fromarray(label_map).save(out / "annotations" / f"scene{i:04d}.png")
    (out / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\nignore_index: 255\n")
    return out


def export_user_model(checkpoint: Path, repository: Path, quantize: bool = True, report: Path | None = None,
                      command: str = "", recipes: list[str] | None = None) -> dict[str, Any] | None:
    """A model trained on your images into a model repository, the way the default family ships: an
    unfinished checkpoint is refused before anything is written; the staged fp32 graphs (parity-checked),
    then, unless `quantize` is False (`--no-quantize`), the quantization gate on your validation (calibration)
    and test (quality) splits, passing recipes only (exporters/segmentation_user_quant.py). The gate's section
    goes into `report` (quality.md; default: quality.md beside the checkpoint when it exists) -> the gate's
    result (None when not run)."""
    from exporters.segmentation_user_quant import export_user_model as export_and_gate
    from exporters.segmentation_user_quant import render_gate
    from models.segmentation.user_report import add_gate_section

    command = command or f"python -m models.segmentation.user_data export {checkpoint} --repository {repository}" + \
        ("" if quantize else " --no-quantize")
    gate = export_and_gate(checkpoint, repository, command, quantize=quantize, recipes=recipes)
    report = report or checkpoint.parent / "quality.md"
    if report.is_file():
        add_gate_section(report, render_gate(gate, "--no-quantize: the fp32 stages only"), gate)
    return gate


def main(argv: list[str] | None = None) -> None:
    """`python -m models.segmentation.user_data example DIR`: writes the example data set.
    `python -m models.segmentation.user_data export CHECKPOINT --repository DIR [--no-quantize]`: exports a
    model trained on your images (`python -m models.segmentation.train --data`) with its quantization gate."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.segmentation.user_data", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["example", "export"])
    parser.add_argument("path", type=Path, metavar="DIR|CHECKPOINT",
                        help="example: the folder to write; export: the checkpoint (e.g. artifacts/segmentation-user/"
                             "eco_m2f.pt)")
    parser.add_argument("--images", type=int, default=400, help="example: how many labelled images")
    parser.add_argument("--seed", type=int, default=11, help="example: the scenes' seed")
    parser.add_argument("--repository", type=Path, default=None, help="export: the model repository to write")
    parser.add_argument("--no-quantize", action="store_true",
                        help="export: the fp32 stages only: skip the quantization recipes and their gate")
    parser.add_argument("--recipes", nargs="+", default=None, metavar="RECIPE",
                        help="export: only these recipes (default: every deployable one of exporters/quantize)")
    parser.add_argument("--report", type=Path, default=None,
                        help="export: the quality report to add the gate's section to (default: quality.md beside "
                             "the checkpoint)")
    args = parser.parse_args(argv)
    if args.command == "example":
        write_example(args.path, args.images, args.seed)
        print(f"wrote {args.images} labelled images into {args.path}")
        return
    if args.repository is None:
        parser.error("export needs --repository DIR")
    from exporters.segmentation_user_quant import UnfinishedTraining, render_gate

    try:
        gate = export_user_model(args.path, args.repository, not args.no_quantize, args.report,
                                 recipes=args.recipes)
    except (UnfinishedTraining, ValueError, FileNotFoundError) as exc:  # the checkpoint's or the data's fault
        raise SystemExit(f"error: {exc}") from None
    print(render_gate(gate, "--no-quantize: the fp32 stages only").strip())
    print(f"exported into {args.repository}: make serve SERVE_REPOSITORY={args.repository}")


if __name__ == "__main__":
    main()
