"""Data throughput per family through its own user-data loader, against the training it feeds (issue 24).

    python -m benchmarks.data_throughput [--out reports/data_throughput.md] [--scale S]   # -> .md + .json

For each family an example data set of a stated size is generated in a temporary folder by the family's own
example writer (the audio family has none: clips of tones in noise are written here, WAV and FLAC at 16, 32
and 44.1 kHz, mono and stereo, with a labels.csv), and each other layout a family reads as that example
rewritten (ctr-parquet: the click log as one Parquet file; segmentation-ade20k: the ADE20K scene-parsing layout;
audio-hear: a HEAR 2021 scene task at the model's rate), then:

- load: a fresh child process imports the loader, records its peak RSS, runs the loader once (warm-up, the
  files then sit in the page cache as they would after the first epoch's read), then `--repeats` more times
  (median wall and CPU seconds; the previous result is dropped first, so the peak is one load's). "Through the
  loader" is what the training entry point calls before its first step: read, validate, decode and resize into
  the arrays training consumes (models/ctr/user_data.load_user_data for both CTR layouts, models/segmentation/
  user_data.load_label_maps, models/splitcompute/user_data.load_image_folder, and for audio
  models/audio/user_data.prepare_csv + its audio at the model's rate + the log-mel scene windows of
  models/audio/fine_tune.Windows that fine-tuning trains on, on one torch thread as its entry point sets);
- train: another child loads once (not timed) and runs the family's own training function for one epoch on
  half a random share of every split (untimed, as a warm-up, then timed), then on the share (the whole set
  when small): DIN (Dice) of models/ctr/train.train_variant, step 1 of models/segmentation/train.train_parent,
  the teacher of models/splitcompute/train.train_teacher (the student's stages differ), the bag-of-words
  fine-tuning of models/audio/fine_tune.fine_tune (its head epochs on frozen embeddings included), each with
  the threads its entry point sets. The difference of the two timed runs, scaled by the share, is one epoch
  over the whole set (its per-epoch validation included; the fixed costs of a run cancel), expressed in the
  loader's units per second.

Every loader here runs once, before training, and holds the whole set in memory; no loader streams batches
during training. The ratio (loader units/s over training units/s) is therefore the time of one training epoch
over the data set divided by the time to load it: above 1, loading takes less than one epoch; the loader's
share of a run of E epochs is load / (load + E x epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving.machine import Window, all_cores, take_sample

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m benchmarks.data_throughput"
AUDIO_RATE = 32000  # models/audio/frontend.FrontEndConfig.sample_rate: what the audio loader resamples to
AUDIO_CLIP_SECONDS = 3.0


@dataclass(frozen=True)
class Family:
    name: str
    unit: str  # what the loader's throughput counts
    sample_unit: str  # what one training step consumes, counted per second of training
    size: Callable[[float], int]  # scale -> the example's size parameter
    size_label: str  # what that parameter is
    train_cap: int  # training samples (of the train split) measured at most; the other splits in proportion
    note: str  # what the training measure runs
    epochs: int  # epochs of one default training run after the one load (`runs` says which)
    runs: str
    trains_as: str = ""  # another layout of this family's data: its loader differs, its training is that family's

    @property
    def trainer(self) -> str:
        return self.trains_as or self.name


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("ctr-clicklog", "events", "training rows", lambda s: max(300, round(25_000 * s)), "users", 5000,
           "DIN (Dice), models/ctr/train.train_variant, 1 epoch", 24,
           "models/ctr/train --data: 3 variants x 8 epochs, one seed"),
    Family("ctr-amazon", "reviews", "training rows", lambda s: max(300, round(40_000 * s)), "users", 20_000,
           "DIN (Dice), models/ctr/train.train_variant, 1 epoch", 24,
           "models/ctr/train --data: 3 variants x 8 epochs, one seed"),
    Family("segmentation", "images", "training images", lambda s: max(24, round(3000 * s)), "images", 1200,
           "ECO-M2F step 1, models/segmentation/train.train_parent, 1 epoch, 1 thread", 12,
           "step 1's 12 epochs; the gate's steps 2-3 not counted"),
    Family("splitcompute", "images", "training images", lambda s: max(4, round(300 * s)), "images per class", 1200,
           "teacher, models/splitcompute/train.train_teacher, 1 epoch, 1 thread", 4,
           "the teacher's 4 epochs; the student stages of the 3 betas not counted"),
    Family("audio", "audio seconds", "training windows (1 s)", lambda s: max(24, round(400 * s)), "clips of 3 s",
           200, "bag-of-words fine-tuning, models/audio/fine_tune.fine_tune, 1 epoch, 1 thread", 10,
           "make train-audio's --fine-tune 10; the frozen embedders' probes not counted"),
)}
# Other layouts of a family's data: the same sizes and training, another loader (`load`, `write_example`).
LAYOUTS = {"ctr-parquet": "ctr-clicklog", "segmentation-ade20k": "segmentation", "audio-hear": "audio"}
FAMILIES.update({name: replace(FAMILIES[base], name=name, trains_as=base) for name, base in LAYOUTS.items()})
# The report's row order: each layout after the family it trains as.
FAMILIES = {name: FAMILIES[name] for base in list(FAMILIES) if base not in LAYOUTS
            for name in (base, *(layout for layout, of in LAYOUTS.items() if of == base))}


# --- example data ------------------------------------------------------------------------------------------


def _tone_clip(label: int, rate: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """AUDIO_CLIP_SECONDS of label's tone band (200 x 2^label Hz, +-10%) in noise, (samples, channels)."""
    t = np.arange(int(AUDIO_CLIP_SECONDS * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 * 2 ** label) * rng.uniform(0.9, 1.1) * t)
    return np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)


def _write_audio_example(folder: Path, clips: int, seed: int = 0) -> None:
    """`clips` clips of AUDIO_CLIP_SECONDS: 4 labels (a tone band each) in noise, 8 groups (speakers); formats
    rotate over WAV 44.1 kHz stereo, FLAC 16 kHz mono and WAV 32 kHz mono (decode and resample both exercised)."""
    import soundfile

    rng = np.random.default_rng(seed)
    formats = ((44_100, 2, "wav"), (16_000, 1, "flac"), (32_000, 1, "wav"))
    rows = ["file,label,group"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        rate, channels, suffix = formats[i % len(formats)]
        label = i % 4
        audio = _tone_clip(label, rate, channels, rng)
        name = f"clip{i:05d}.{suffix}"
        soundfile.write(str(folder / name), audio.astype(np.float32), rate,
                        subtype="PCM_16")
        rows.append(f"{name},tone{label},speaker{(i // 4) % 8}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def _write_parquet_example(folder: Path, users: int) -> None:
    """The click-log example (models/ctr/user_data's writer) as one Parquet file, the CSV removed."""
    import pyarrow.csv
    import pyarrow.parquet

    from models.ctr import user_data

    user_data.main(["example", str(folder / "clicks.csv"), "--users", str(users)])
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(folder / "clicks.csv"), folder / "clicks.parquet")
    (folder / "clicks.csv").unlink()


def _write_ade20k_example(folder: Path, images: int) -> None:
    """The segmentation example (models/segmentation/user_data.write_example) in the ADE20K scene-parsing layout:
    images/{training,validation}/ADE_<split>_<n>.jpg, annotations/... .png with label k+1 for class k and 0 for
    the ignored outlines, objectInfo150.txt naming the classes; one image in ten in validation."""
    import shutil

    from PIL import Image

    from models.segmentation.user_data import write_example as write_scenes

    source = write_scenes(folder / "folder-layout", images)
    names = [line for line in (source / "classes.txt").read_text().splitlines() if line and ":" not in line]
    for i, image in enumerate(sorted((source / "images").iterdir())):
        split = "validation" if i % 10 == 9 else "training"
        stem = f"ADE_{'val' if split == 'validation' else 'train'}_{i:08d}"
        for kind in ("images", "annotations"):
            (folder / kind / split).mkdir(parents=True, exist_ok=True)
        Image.open(image).convert("RGB").save(folder / "images" / split / f"{stem}.jpg", quality=95)
        labels = np.asarray(Image.open(source / "annotations" / f"{image.stem}.png")).astype(np.int16)
        ade = np.where(labels == 255, 0, labels + 1).astype(np.uint8)
        Image.fromarray(ade).save(folder / "annotations" / split / f"{stem}.png")
    (folder / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n" + "".join(
        f"{k + 1}\t0.1\t1\t1\t{name}\n" for k, name in enumerate(names)))
    shutil.rmtree(source)


def _write_hear_example(folder: Path, clips: int, seed: int = 0) -> None:
    """A HEAR 2021 scene task (models/audio/hear_task.py): the tones of `_write_audio_example`, mono WAV at the
    model's rate under 32000/<split>/, train/valid/test 60/20/20, <split>.json and task_metadata.json."""
    import json

    import soundfile

    rng = np.random.default_rng(seed)
    labels: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}, "test": {}}
    for i in range(clips):
        split = ("train", "train", "train", "valid", "test")[i % 5]
        label = i % 4
        audio = _tone_clip(label, AUDIO_RATE, 1, rng)
        name = f"clip{i:05d}.wav"
        (folder / str(AUDIO_RATE) / split).mkdir(parents=True, exist_ok=True)
        soundfile.write(str(folder / str(AUDIO_RATE) / split / name), audio.astype(np.float32), AUDIO_RATE,
                        subtype="PCM_16")
        labels[split][name] = [f"tone{label}"]
    for split, named in labels.items():
        (folder / f"{split}.json").write_text(json.dumps(named))
    (folder / "task_metadata.json").write_text(json.dumps(
        {"task_name": "tones", "mode": "train/valid/test", "embedding_type": "scene", "prediction_type": "multiclass",
         "label_vocabulary": [f"tone{k}" for k in range(4)], "sample_rates": [AUDIO_RATE]}))


def write_example(family: str, folder: Path, size: int) -> dict[str, Any]:
    """The family's example data set of `size` (Family.size_label) in `folder` -> {"files", "bytes"}."""
    if family == "ctr-clicklog":
        from models.ctr import user_data

        user_data.main(["example", str(folder / "clicks.csv"), "--users", str(size)])
    elif family == "ctr-parquet":
        _write_parquet_example(folder, size)
    elif family == "segmentation-ade20k":
        _write_ade20k_example(folder, size)
    elif family == "audio-hear":
        _write_hear_example(folder, size)
    elif family == "ctr-amazon":
        from models.ctr.amazon_example import write_amazon_example

        write_amazon_example(folder, users=size, items=max(600, size // 20))
    elif family == "segmentation":
        from models.segmentation.user_data import write_example as write_scenes

        write_scenes(folder, size)
    elif family == "splitcompute":
        from models.splitcompute.user_data import write_example_folder

        write_example_folder(folder, size)
    elif family == "audio":
        _write_audio_example(folder, size)
    else:
        raise ValueError(f"unknown family {family!r}")
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


# --- the loaders and the training they feed (run in child processes) --------------------------------------


def load(family: str, folder: Path) -> tuple[Any, float, dict[str, Any]]:
    """The family's loader on `folder` -> (what training consumes, units, details)."""
    if family in ("ctr-clicklog", "ctr-parquet", "ctr-amazon"):
        from models.ctr.user_data import TimeSplit, load_user_data

        if family == "ctr-clicklog":
            loaded = load_user_data(folder / "clicks.csv", "clicklog", TimeSplit())
        elif family == "ctr-parquet":
            loaded = load_user_data(folder / "clicks.parquet", "clicklog", TimeSplit())
        else:
            loaded = load_user_data(folder / "reviews_Synthetic_5.json.gz", "amazon", TimeSplit())
        return loaded, float(loaded.summary["events"]), {"rows": loaded.summary["rows"]}
    if family in ("segmentation", "segmentation-ade20k"):
        from models.segmentation.user_data import LabelMapConfig, load_label_maps

        layout = "ade20k" if family.endswith("ade20k") else "folder"
        scenes = load_label_maps(LabelMapConfig(str(folder), format=layout))
        return scenes, float(len(scenes.images)), {"image_size": int(scenes.images.shape[1])}
    if family == "splitcompute":
        from models.splitcompute.user_data import ImageFolderConfig, load_image_folder

        data = load_image_folder(ImageFolderConfig(str(folder)))
        return data, float(len(data.labels)), {"image_size": int(data.images.shape[-1])}
    if family in ("audio", "audio-hear"):
        import torch

        from models.audio import fine_tune as tuning
        from models.audio.frontend import FrontEndConfig
        from models.audio.user_data import prepare_csv, prepare_task

        torch.set_num_threads(1)  # models/audio/user_data.main sets --threads (default 1) before it loads
        started = time.perf_counter()
        prepared = (prepare_task(folder) if family == "audio-hear"
                    else prepare_csv(folder, folder / "labels.csv", 0.25, 0))
        audio = prepared.audio(AUDIO_RATE)
        decoded = time.perf_counter()
        windows = tuning.Windows(audio, FrontEndConfig())
        seconds = sum(len(a) for a in audio) / AUDIO_RATE
        stages = {"decode_resample_s": round(decoded - started, 3),
                  "log_mel_windows_s": round(time.perf_counter() - decoded, 3), "windows": len(windows.mels)}
        return (prepared, windows), seconds, stages
    raise ValueError(f"unknown family {family!r}")


def _share(rows: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    keep = max(1, round(len(rows) * fraction))
    return np.sort(rng.permutation(rows)[:keep]) if keep < len(rows) else rows


def train_one_epoch(family: str, loaded: Any, fraction: float) -> dict[str, Any]:
    """One epoch of the family's training on a random `fraction` of every split -> {"samples", "seconds",
    "torch_threads"}: its training samples and the run's wall seconds."""
    import torch

    rng = np.random.default_rng(0)
    family = FAMILIES[family].trainer
    if family in ("ctr-clicklog", "ctr-amazon"):
        from models.ctr.train import TrainConfig, train_variant

        data = replace(loaded.data, **{k: _share(getattr(loaded.data, k), fraction, rng)
                                       for k in ("train_users", "valid_users", "test_users")})
        started = time.perf_counter()
        train_variant("din_dice", data, TrainConfig(epochs=1), progress=False)
        return {"samples": len(data.train_users), "seconds": time.perf_counter() - started,
                "torch_threads": torch.get_num_threads()}
    if family == "segmentation":
        from models.segmentation.eco_m2f import EcoM2FConfig
        from models.segmentation.train import TrainConfig as SegmentationConfig
        from models.segmentation.train import train_parent

        scenes = replace(loaded, **{k: _share(getattr(loaded, k), fraction, rng) for k in ("train", "valid", "test")})
        cfg = SegmentationConfig(epochs=1)
        torch.set_num_threads(cfg.threads)  # as models/segmentation/train.run
        model_cfg = replace(EcoM2FConfig(), n_classes=len(scenes.class_names), image_size=scenes.images.shape[1])
        started = time.perf_counter()
        train_parent(scenes, model_cfg, cfg, progress=False)
        return {"samples": len(scenes.train), "seconds": time.perf_counter() - started, "torch_threads": cfg.threads}
    if family == "splitcompute":
        from models.splitcompute.train import TrainConfig as SplitConfig
        from models.splitcompute.train import fit_to_data, single_thread, train_teacher

        data = replace(loaded, **{k: _share(getattr(loaded, k), fraction, rng) for k in ("train", "valid", "test")})
        split_cfg = fit_to_data(SplitConfig(teacher_epochs=1), data)
        with single_thread():  # as models/splitcompute/train.run
            started = time.perf_counter()
            train_teacher(data, split_cfg)
            seconds = time.perf_counter() - started
        return {"samples": len(data.train), "seconds": seconds, "torch_threads": 1}
    if family == "audio":
        from models.audio import fine_tune as tuning
        from models.audio.user_data import EMBEDDERS, validation_part

        prepared, windows = loaded
        train = _share(np.array(prepared.folds[0][0]), fraction, rng).tolist()
        fit, validation = validation_part(train, prepared.groups, prepared.y, 0)
        torch.set_num_threads(1)  # models/audio/user_data's --threads default
        started = time.perf_counter()
        model, _ = tuning.read_back(ROOT / "shipped_models" / EMBEDDERS["bag of words"], len(prepared.names),
                                    windows.waveforms[windows.of(fit)[:8]])
        if model is None:
            raise RuntimeError("shipped_models/audio-bow-fp32 does not read back: nothing to fine-tune")
        tuning.fine_tune(model, windows, prepared.y, fit, validation, 1, 0, progress=False)
        return {"samples": len(windows.of(fit)), "seconds": time.perf_counter() - started, "torch_threads": 1}
    raise ValueError(f"unknown family {family!r}")


def _train_samples(family: str, loaded: Any) -> int:
    family = FAMILIES[family].trainer
    if family in ("ctr-clicklog", "ctr-amazon"):
        return len(loaded.data.train_users)
    if family == "audio":
        return len(loaded[0].folds[0][0])
    return len(loaded.train)


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: now; VmHWM: the peak), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Resets the process's peak RSS (VmHWM) to its RSS now (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_load(family: str, folder: Path, repeats: int) -> dict[str, Any]:
    """In a fresh process: the loader's imports, a warm-up load, then `repeats` timed loads, each with the
    process's peak RSS reset before it, so each peak is that load's (imports resident, their transient not)."""
    load(family, folder)  # warm-up: imports, page cache
    runs = []
    result: tuple[Any, float, dict[str, Any]] | None = None
    reset = True
    for _ in range(repeats):
        result = None  # the previous result freed first: the peak is one load's
        before = _status_mib("VmRSS")
        reset = _reset_peak() and reset
        wall, cpu = time.perf_counter(), time.process_time()
        result = load(family, folder)
        runs.append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                     "rss_before_mib": before, "peak_rss_mib": _status_mib("VmHWM")})
    assert result is not None, "no timed load"
    return {"units": result[1], "details": result[2], "runs": runs, "peak_reset": reset,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "load_rss_mib": max(r["peak_rss_mib"] - r["rss_before_mib"] for r in runs)}


def child_train(family: str, folder: Path, cap: int) -> dict[str, Any]:
    """Load once, warm up, then one epoch on half the share and one on the share (train samples <= `cap`): the
    difference is the epoch's marginal cost (the run's fixed costs, a model's construction and first calls,
    cancel), scaled to the whole set."""
    loaded, units, _ = load(family, folder)
    fraction = min(1.0, cap / _train_samples(family, loaded))
    train_one_epoch(family, loaded, fraction / 2)  # warm-up, untimed: torch's first calls, caches
    half = train_one_epoch(family, loaded, fraction / 2)
    full = train_one_epoch(family, loaded, fraction)
    if full["seconds"] > half["seconds"] and full["samples"] > half["samples"]:
        epoch_s = (full["seconds"] - half["seconds"]) / (fraction / 2)
        samples_per_s = (full["samples"] - half["samples"]) / (full["seconds"] - half["seconds"])
        method = "marginal"
    else:  # too small to tell apart (tiny scales): the whole run, fixed costs included
        epoch_s, samples_per_s, method = full["seconds"] / fraction, full["samples"] / full["seconds"], "whole run"
    return {"units": units, "fraction": fraction, "half": half, "full": full, "epoch_s": epoch_s,
            "samples_per_s": samples_per_s, "method": method, "torch_threads": full["torch_threads"],
            "fixed_s": max(0.0, full["seconds"] - epoch_s * fraction)}


def _run_child(mode: str, family: str, folder: Path, number: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "benchmarks.data_throughput", "--child", mode, "--family", family,
               "--data", str(folder), "--number", str(number)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(last))


# --- the measurement -----------------------------------------------------------------------------------------


def measure_family(family: str, workdir: Path, scale: float, repeats: int = 3) -> dict[str, Any]:
    """Write the family's example, time its loader in one child and one training epoch in another."""
    spec = FAMILIES[family]
    folder = workdir / family
    size = spec.size(scale)
    started = time.perf_counter()
    written = write_example(family, folder, size)
    write_s = time.perf_counter() - started
    loads = _run_child("load", family, folder, repeats)
    training = _run_child("train", family, folder, max(1, round(spec.train_cap * min(1.0, scale))))
    wall = statistics.median(r["wall_s"] for r in loads["runs"])
    cpu = statistics.median(r["cpu_s"] for r in loads["runs"])
    units = loads["units"]
    loader_rate, training_rate = units / wall, units / training["epoch_s"]  # one epoch, its validation included
    return {
        "family": family, "unit": spec.unit, "size": {spec.size_label: size, **written}, "units": units,
        "write_s": round(write_s, 2), "load": {**loads, "wall_s": wall, "cpu_s": cpu},
        "loader_units_per_s": loader_rate, "peak_rss_mib": loads["peak_rss_mib"], "load_rss_mib": loads["load_rss_mib"],
        "training": {**training, "what": spec.note, "sample_unit": spec.sample_unit},
        "training_units_per_s": training_rate, "ratio": loader_rate / training_rate,
        "default_run": {"epochs": spec.epochs, "what": spec.runs,
                        "load_share": wall / (wall + spec.epochs * training["epoch_s"])},
    }


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


def run(families: list[str], scale: float, repeats: int = 3, workdir: Path | None = None,
        command: str = COMMAND) -> dict[str, Any]:
    before = machine()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="data-throughput-", dir=workdir) as scratch:
        for family in families:
            first = take_sample(os.getpid())
            row = measure_family(family, Path(scratch), scale, repeats)
            row["cores"] = all_cores(Window(first, take_sample(os.getpid())))
            results.append(row)
    return {"command": command, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "scale": scale,
            "repeats": repeats, "machine": before, "load_average_after": list(os.getloadavg()),
            "wall_s": round(time.perf_counter() - started, 1), "families": results}


# --- the report ------------------------------------------------------------------------------------------------


def _cores_line(rows: list[dict[str, Any]]) -> str:
    """Both cores during each family's measurement (/proc/stat): idle, and foreign work (others' processes)."""
    measured = [row for row in rows if "cores" in row]
    if not measured:
        return "Core idle time not recorded."
    parts = [f"{row['family']} idle {row['cores']['idle_share']:.0%}, foreign {row['cores']['foreign_share']:.1%}"
             for row in measured]
    offenders = sorted({o for row in measured for o in row["cores"]["offenders"]})
    return ("All cores over each family's measurement (/proc/stat): " + "; ".join(parts) + "."
            + (f" Other processes that used CPU meanwhile: {', '.join(offenders)}." if offenders else ""))


def _size(row: dict[str, Any]) -> str:
    (label, value), *_ = row["size"].items()
    return f"{value:,} {label}, {row['size']['files']:,} files, {row['size']['bytes'] / 2**20:.0f} MiB"


def _shows(row: dict[str, Any]) -> str:
    t = row["training"]
    run = row["default_run"]
    verdict = ("the loader is not the bottleneck: loading the whole set takes "
               f"{1 / row['ratio']:.2f} of one epoch" if row["ratio"] >= 2 else
               "the loader is NOT well clear of one epoch: loading the whole set takes "
               f"{1 / row['ratio']:.2f} of one epoch")
    verdict += (f"; in a default run ({run['what']}) loading is {run['load_share']:.1%} of the time "
                "(loaded once; the epochs reuse the arrays)")
    text = (f"**{row['family']}**: {row['units']:,.0f} {row['unit']} load in {row['load']['wall_s']:.2f} s "
            f"({row['loader_units_per_s']:,.0f} {row['unit']}/s, CPU {row['load']['cpu_s']:.2f} s, peak RSS "
            f"{row['peak_rss_mib']:.0f} MiB, the load's own {row['load_rss_mib']:.0f} MiB). Training ({t['what']}) "
            f"consumed {t['samples_per_s']:,.1f} {t['sample_unit']}/s ({t['torch_threads']} torch "
            f"thread(s); {_method(t)}): {t['epoch_s']:.1f} s per epoch over the whole set, so {verdict}.")
    details = row["load"]["details"]
    if "decode_resample_s" in details:
        text += (f" Of the last load, decoding and resampling took {details['decode_resample_s']:.2f} s and the "
                 f"log-mel windows ({details['windows']:,}) {details['log_mel_windows_s']:.2f} s.")
    return text


def _method(t: dict[str, Any]) -> str:
    runs = (f"one-epoch runs on {t['fraction'] / 2:.0%} and {t['fraction']:.0%} of every split took "
            f"{t['half']['seconds']:.1f} s and {t['full']['seconds']:.1f} s")
    if t["method"] == "marginal":
        return f"{runs}, their difference is the epoch's cost, {t['fixed_s']:.1f} s of the run fixed"
    return f"{runs}, too close to tell apart: the whole run counted, fixed costs included"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Data throughput per family: the user-data loaders against the training they feed (issue 24)", "",
        f"Produced by `{result['command']}` on {result['date']} ({result['wall_s']:.0f} s wall, scale "
        f"{result['scale']:g}, {result['repeats']} timed loads after one warm-up, median). Machine: {m['cores']} "
        f"cores ({m['processor']}), Python {m['python']}; load average before "
        f"{' '.join(f'{v:.2f}' for v in m['load_average'])}, after "
        f"{' '.join(f'{v:.2f}' for v in result['load_average_after'])}. " + _cores_line(result["families"]), "",
        "Each loader is timed in a fresh child process on an example data set generated for the run (the "
        "family's own example writer; audio: tones in noise written here; the other layouts of a family's data, "
        "ctr-parquet, segmentation-ade20k and audio-hear, are its example rewritten here as a Parquet file, the "
        "ADE20K scene-parsing layout and a HEAR 2021 task, and train as that family). Peak RSS is that child's "
        "high-water "
        "mark (VmHWM) during a load, reset before each (/proc/self/clear_refs): the resident imports (torch, "
        "numpy, ...) included, their transient at import time not; the column after it is the load's own: "
        "that peak minus the RSS just before the load (the largest over the timed loads). "
        "Training: one epoch of the family's own training function, in another child that loads once "
        "(untimed), on half a random share of every split and then on the share; the difference of the two "
        "runs is the epoch's marginal cost (a model's construction and first calls cancel), scaled to the "
        "whole set, its per-epoch validation included. Every loader runs once "
        "before training and holds the set in memory, so the ratio = loader units/s / training units/s = the "
        "time of one epoch over the set / the time to load it; > 1: loading is shorter than one epoch. The last "
        "column: load / (load + E x epoch) for the E epochs of the entry point's default run.", "",
        "| family | units | size | load wall s | units/s | CPU s | peak RSS MiB | load's own MiB | "
        "training samples/s | epoch s | training units/s | ratio | load share of a default run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["families"]:
        t = row["training"]
        lines.append(
            f"| {row['family']} | {row['unit']} | {_size(row)} | {row['load']['wall_s']:.2f} | "
            f"{row['loader_units_per_s']:,.0f} | {row['load']['cpu_s']:.2f} | {row['peak_rss_mib']:.0f} | "
            f"{row['load_rss_mib']:.0f} | {t['samples_per_s']:,.1f} {t['sample_unit']} | {t['epoch_s']:.1f} | "
            f"{row['training_units_per_s']:,.0f} | {row['ratio']:.1f} | "
            f"{row['default_run']['load_share']:.1%} of {row['default_run']['epochs']} epochs |")
    if not all(row["load"]["peak_reset"] for row in result["families"]):
        lines += ["", "The peak RSS could not be reset here (/proc/self/clear_refs): peaks include the imports' "
                  "transient."]
    lines += ["", "## What this shows", ""]
    lines += [f"- {_shows(row)}" for row in result["families"]]
    lines += ["", "Not measured: the Parquet click log (models/ctr/click_log_parquet.py), the ADE20K layout and the "
              "HEAR task layout (models/audio/hear_task.py) of the same families, the probe-only audio path (no "
              "training: decode + embed), and the splitcompute student stages (the teacher's epoch stands for "
              "training).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/data_throughput.md"),
                        help="the Markdown report (+ .json beside it)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every example's size")
    parser.add_argument("--repeats", type=int, default=3, help="timed loads after the warm-up (median)")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--child", choices=["load", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--family", choices=list(FAMILIES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--number", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        figures = (child_load if args.child == "load" else child_train)(args.family, args.data, args.number)
        print(json.dumps(figures))
        return None
    command = COMMAND + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
    result = run(args.families, args.scale, args.repeats, command=command)
    text = render(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
