"""The audio embedders evaluated on a user's own labelled recordings: the HEAR-style linear probe on
frozen scene embeddings of the exported embedders (PaSST, bag of words) next to log-mel statistics
(per mel bin mean and std, nothing learned), on the user's held-out split.

    python -m models.audio.user_data --data DIR --labels labels.csv --repository shipped_models

The layout: DIR holds the recordings (WAV, FLAC, OGG: whatever libsndfile reads, any rate, any
channel count); labels.csv has a header with `file` (relative to DIR) and `label`, and optionally
`split` (`train` or `test`) and `group` (a speaker, a recording session, a source: every clip of a
group lands on the same side of the split, so the test is on sources the probe never saw). Without
`split`, a seeded draw holds out `--test-fraction` of the groups (of the files when there is no
`group`). Each clip is mixed to mono and resampled to the model's rate (scipy's polyphase filter).

Reported per embedder: test accuracy of a logistic-regression probe (standardised inputs) with a
bootstrap 95% interval over the test clips, and a control, the same probe trained on shuffled
labels (chance; a control far above chance means the split leaks). Not yet: training or fine-tuning
the embedders on this data, the HEAR task-folder layout, timestamp (event) tasks (issue 24).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from hear_infersuite import api as hear
from models.audio.frontend import FrontEndConfig, LogMelStatistics
from models.audio.metrics import linear_probe_accuracy, linear_probe_predictions

EMBEDDERS = {"PaSST": "audio-passt-fp32", "bag of words": "audio-bow-fp32"}
BASELINE = "log-mel statistics (nothing learned)"


class LabelsError(ValueError):
    """labels.csv or a file it names is not usable; the message says which line and why."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    group: str
    split: str | None


def read_labels(data: Path, labels: Path) -> list[Clip]:
    with labels.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"file", "label"} <= set(reader.fieldnames or []):
            raise LabelsError(f"{labels}: the header needs the columns 'file' and 'label' (and may have 'split', "
                              f"'group'), got {reader.fieldnames}")
        clips = []
        for line, row in enumerate(reader, start=2):
            path, label = data / (row["file"] or "").strip(), (row["label"] or "").strip()
            split = (row.get("split") or "").strip() or None
            if not path.is_file():
                raise LabelsError(f"{labels}:{line}: no file {path}")
            if not label:
                raise LabelsError(f"{labels}:{line}: empty label")
            if split not in (None, "train", "test"):
                raise LabelsError(f"{labels}:{line}: split must be train or test, got {split!r}")
            clips.append(Clip(path, label, (row.get("group") or "").strip() or path.name, split))
    if len({c.label for c in clips}) < 2:
        raise LabelsError(f"{labels}: a probe needs at least two labels")
    return clips


def split_clips(clips: list[Clip], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, test indices): the file's own split, else whole groups drawn with `seed`."""
    if all(c.split is not None for c in clips):
        return ([i for i, c in enumerate(clips) if c.split == "train"],
                [i for i, c in enumerate(clips) if c.split == "test"])
    groups = sorted({c.group for c in clips})
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(groups)[:max(1, round(test_fraction * len(groups)))].tolist())
    return [i for i, c in enumerate(clips) if c.group not in held], [i for i, c in enumerate(clips) if c.group in held]


def load_audio(path: Path, rate: int) -> np.ndarray:
    """Mono float32 at `rate`."""
    samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if source_rate != rate:
        common = gcd(int(source_rate), rate)
        mono = resample_poly(mono, rate // common, int(source_rate) // common).astype(np.float32)
    if not np.isfinite(mono).all():
        raise LabelsError(f"{path}: holds NaN or Inf samples")
    return mono


def _interval(correct: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (resamples, len(correct)))].mean(axis=1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


def probe(features: np.ndarray, labels: np.ndarray, train: list[int], test: list[int], seed: int) -> dict[str, Any]:
    predicted = linear_probe_predictions(features[train], labels[train], features[test])
    correct = (predicted == labels[test]).astype(np.float64)
    shuffled = np.random.default_rng(seed).permutation(labels[train])
    control = linear_probe_accuracy(features[train], shuffled, features[test], labels[test])
    return {"accuracy": round(float(correct.mean()), 4), "interval_95": _interval(correct, seed=seed),
            "shuffled_label_control": round(control, 4)}


def evaluate(data: Path, labels: Path, repository: Path, test_fraction: float = 0.25,
             seed: int = 0) -> dict[str, Any]:
    clips = read_labels(data, labels)
    train, test = split_clips(clips, test_fraction, seed)
    names = sorted({c.label for c in clips})
    y = np.array([names.index(c.label) for c in clips])
    if not train or not test or len(set(y[train])) < 2:
        raise LabelsError("the split leaves an empty side or a single training label: add clips or groups")
    results: dict[str, Any] = {}
    statistics = LogMelStatistics(FrontEndConfig()).eval()
    rate = FrontEndConfig().sample_rate
    audio = [load_audio(c.path, rate) for c in clips]
    with torch.no_grad():
        features = np.stack([statistics(torch.from_numpy(a)[None]).numpy()[0] for a in audio])
    results[BASELINE] = probe(features, y, train, test, seed)
    for title, model_name in EMBEDDERS.items():
        model = hear.load_model(str(repository / model_name), threads=1)
        at_rate = audio if model.sample_rate == rate else [load_audio(c.path, model.sample_rate) for c in clips]
        embedded = np.stack([hear.get_scene_embeddings(torch.from_numpy(a)[None], model).numpy()[0]
                             for a in at_rate])
        results[title] = probe(embedded, y, train, test, seed)
    return {"clips": len(clips), "labels": names, "train": len(train), "test": len(test),
            "groups": len({c.group for c in clips}), "split": "file" if all(c.split for c in clips) else
            f"{test_fraction:g} of the groups held out (seed {seed})", "chance": round(1 / len(names), 4),
            "embedders": results}


def render(result: dict[str, Any], command: str, seconds: float) -> str:
    lines = [
        "# Audio embeddings on your recordings", "",
        f"Produced by `{command}` ({seconds:.0f} s wall): {result['clips']} clips, {len(result['labels'])} labels "
        f"({', '.join(result['labels'])}), {result['groups']} groups; split: {result['split']} "
        f"({result['train']} train, {result['test']} test clips). Linear probe on frozen scene embeddings; interval: "
        f"bootstrap over test clips; control: the probe trained on shuffled labels (chance {result['chance']}).", "",
        "| embedder | test accuracy | 95% interval | shuffled-label control |", "|---|---|---|---|"]
    for name, r in result["embedders"].items():
        lines.append(f"| {name} | {r['accuracy']:.4f} | {r['interval_95'][0]:.4f}-{r['interval_95'][1]:.4f} | "
                     f"{r['shuffled_label_control']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.user_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of recordings")
    parser.add_argument("--labels", type=Path, required=True, help="CSV: file,label[,split][,group]")
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"),
                        help="model repository holding audio-passt-fp32 and audio-bow-fp32")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=Path("artifacts/audio-user/quality.md"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = evaluate(args.data, args.labels, args.repository, args.test_fraction, args.seed)
    command = "python -m models.audio.user_data " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = render(result, command, time.perf_counter() - started)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    args.report.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
