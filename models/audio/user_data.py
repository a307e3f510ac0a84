"""The audio embedders evaluated on a user's own labelled recordings: the HEAR-style linear probe on
frozen embeddings of the exported embedders (PaSST, bag of words) next to log-mel statistics (per mel
bin mean and std, nothing learned), on the user's held-out split; optionally the bag of words
fine-tuned on the user's train split beside them.

    python -m models.audio.user_data --data DIR --labels labels.csv --repository shipped_models
    python -m models.audio.user_data --format hear --data TASK_DIR --repository shipped_models
    python -m models.audio.user_data ... --fine-tune 10 [--out-repository user_models]

CSV layout (`--format csv`, the default): DIR holds the recordings (WAV, FLAC, OGG: whatever
libsndfile reads, any rate, any channel count); labels.csv has a header with `file` (relative to DIR)
and `label`, and optionally `split` (`train` or `test`) and `group` (a speaker, a recording session,
a source: every clip of a group lands on the same side of the split, so the test is on sources the
probe never saw). Without `split`, a seeded draw holds out `--test-fraction` of the groups (of the
files when there is no `group`). Each clip is mixed to mono and resampled to the model's rate
(scipy's polyphase filter).

HEAR layout (`--format hear`, models/audio/hear_task.py): a HEAR 2021 task folder, task_metadata.json,
<split>.json label files and <sample rate>/<split>/ audio; the audio folder at the model's rate is read
(else the nearest, resampled, with a warning). Scene tasks (one label per file) are probed like the CSV
layout: train + valid -> test, or with folds each fold held out in turn (the test figures pool every
clip's held-out prediction). Event tasks: a frame-level probe on the timestamp embeddings
(hear_infersuite's get_timestamp_embeddings, every 50 ms; log-mel statistics of the same centred
windows as the baseline), one logistic regression per label, frames above 0.5 after a 250 ms median
filter are active, each run of active frames an onset; scored by onset F-measure (every reference onset
matched at most once within +-200 ms, a maximum matching as mir_eval.onset does, per label and file,
micro-averaged), with PaSST's paired difference from every other embedder (the same test clips resampled).

Reported per embedder: test accuracy (events: onset F-measure) with a bootstrap 95% interval over the
test clips, and a control, the same probe trained on shuffled labels (chance; a control far above chance
means the split leaks). `--fine-tune EPOCHS` (scene tasks and the CSV layout) adds the bag of words, or
PaSST with `--fine-tune-embedder passt`, fine-tuned on the train split (models/audio/fine_tune.py: the epoch
chosen on a validation part of the train split, the test clips never read for it; that part: HEAR's valid
split, with folds the fold after the held-out one, else a seeded fifth of the train groups), scored by the
same probe on the same test clips; `--out-repository` exports it as audio-bow-fp32 or audio-passt-fp32 (ONNX,
parity checked). Not yet: fine-tuning on event tasks or multilabel scene tasks (a HEAR `prediction_type`
"multilabel" task is scored by one linear probe per label, mean average precision), exporting a fine-tuned
embedder in folds mode (each fold fine-tunes its own). `--probe both` adds the MLP probe (hear-eval-kit's
protocol: a grid chosen on validation clips inside the train split, refit on them) beside the linear one for
every embedder.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from scipy.ndimage import median_filter
from scipy.signal import resample_poly
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hear_infersuite import api as hear
from infersuite.services.audio import windows as audio_windows
from models.audio import fine_tune as tuning
from models.audio.frontend import FrontEndConfig, LogMelStatistics, WaveformEmbedder
from models.audio.hear_task import EVENT, FOLDS, MULTILABEL, HearTask, HearTaskError, read_task
from models.audio.metrics import linear_probe_accuracy, linear_probe_predictions, mlp_probe_predictions, onset_matches

EMBEDDERS = {"PaSST": "audio-passt-fp32", "bag of words": "audio-bow-fp32"}
ARCHITECTURE_TITLES = {"passt": "PaSST", "bow": "bag of words"}  # meta.json's architecture -> its EMBEDDERS title
BASELINE = "log-mel statistics (nothing learned)"
FINE_TUNED = "bag of words fine-tuned on your train split"
FINE_TUNED_TITLES = {"bow": FINE_TUNED, "passt": "PaSST fine-tuned on your train split"}  # --fine-tune-embedder
VALIDATION_FRACTION = 0.2  # of the train groups: where fine-tuning chooses its epoch (no validation split given)
ONSET_TOLERANCE_S = 0.2  # HEAR's onset tolerance
FRAME_THRESHOLD = 0.5  # event probe: a frame is active above this probability
MEDIAN_FRAMES = 5  # event probe: median filter over 5 timestamps (250 ms at HEAR's 50 ms hop)


HEAR_BASELINE = "HEAR 2021 baseline (hearbaseline: log-mel, random projection)"


def hear_baseline_note(audio: str) -> str:
    """What a report says under its table when the HEAR 2021 baseline is a row; `audio`: what it was fed."""
    return (f"{HEAR_BASELINE}: the public module of HEAR 2021 (hearbaseline 2021.1.1, 4,096 dimensions, 44.1 kHz: "
            f"{audio} resampled), run by its own environment (make hear-baseline; requirements/hear-baseline.txt "
            "says why it cannot share the project's).")


ROOT = Path(__file__).resolve().parents[2]


def _run_hear_module(files: list[str], python: str, module: str, work: Path, *options: str) -> Any:
    """models/audio/hear_module_embed.py's saved arrays for `files`, run by `python` from the project's root."""
    listing, out = work / "files.txt", work / "embeddings.npz"
    listing.write_text("\n".join(files) + "\n")
    subprocess.run([python, "-m", "models.audio.hear_module_embed", "--module", module, "--files", str(listing),
                    "--out", str(out), *options], check=True, timeout=3600, cwd=ROOT)
    saved = np.load(out)
    if list(saved["files"]) != files:
        raise ValueError(f"{module} embedded other files than asked")
    return saved


def hear_module_features(files: list[str], python: str, module: str, work: Path) -> dict[str, np.ndarray]:
    """file -> scene embedding by a HEAR API `module` run by its own interpreter `python`."""
    return dict(zip(files, _run_hear_module(files, python, module, work)["embeddings"], strict=True))


def hear_module_timestamps(files: list[str], python: str, module: str,
                           work: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per file in order, (timestamp embeddings (T, dim), timestamps in ms (T,)) by a HEAR API `module`."""
    saved = _run_hear_module(files, python, module, work, "--timestamps")
    # each item read from the .npz decodes the whole array again: read once, then slice (views of one array)
    embeddings, stamps, lengths = saved["embeddings"], saved["timestamps"], saved["lengths"]
    bounds = np.cumsum([0, *lengths])
    return [(embeddings[a:b], stamps[a:b]) for a, b in itertools.pairwise(bounds)]


def write_report(report: Path, text: str, result: dict[str, Any]) -> None:
    """The Markdown report, its figures as JSON beside it (.json), and the report on stdout."""
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    report.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)


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
    """Mono float32 at `rate`; LabelsError naming the file when it cannot be decoded."""
    try:
        samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise LabelsError(f"{path}: not readable as audio ({str(exc).splitlines()[0]})") from None
    if samples.size == 0:
        raise LabelsError(f"{path}: holds no samples")
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
    return probe_folds([features], labels, [(train, test)], seed)


def _label_scores(train: np.ndarray, targets: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(test clips, labels): per label, a logistic regression's probability (standardised inputs, as the linear
    probe); a label constant over the train clips scores that constant."""
    scores = np.empty((len(test), targets.shape[1]))
    for j in range(targets.shape[1]):
        column = targets[:, j]
        if column.min() == column.max():
            scores[:, j] = column[0]
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(train, column)
        scores[:, j] = model.predict_proba(test)[:, 1]
    return scores


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """HEAR's multilabel score: average precision per label (sklearn), averaged over the labels that have a
    positive among these clips."""
    present = targets.sum(axis=0) > 0
    return float(average_precision_score(targets[:, present], scores[:, present], average="macro"))


def multilabel_probe_folds(features: list[np.ndarray], targets: np.ndarray, folds: list[tuple[list[int], list[int]]],
                           seed: int, resamples: int = 1000) -> dict[str, Any]:
    """The linear probe of a multilabel task: one logistic regression per label on each fold's train clips, every
    test clip's scores pooled over the folds, mean average precision; interval: bootstrap over the test clips;
    control: the same probes trained on the train clips' label rows shuffled."""
    truth, scores, control = [], [], []
    for k, (train, test) in enumerate(folds):
        x = features[k if len(features) > 1 else 0]
        truth.append(targets[test])
        scores.append(_label_scores(x[train], targets[train], x[test]))
        shuffled = targets[train][np.random.default_rng(seed + k).permutation(len(train))]
        control.append(_label_scores(x[train], shuffled, x[test]))
    y, predicted = np.concatenate(truth), np.concatenate(scores)
    rng = np.random.default_rng(seed)
    draws = [mean_average_precision(y[rows], predicted[rows])
             for rows in rng.integers(0, len(y), (resamples, len(y))) if y[rows].sum() > 0]
    return {"mAP": round(mean_average_precision(y, predicted), 4),
            "interval_95": [round(float(np.quantile(draws, q)), 4) for q in (0.025, 0.975)],
            "shuffled_label_control": round(mean_average_precision(y, np.concatenate(control)), 4),
            "labels_scored": int((y.sum(axis=0) > 0).sum())}


def mlp_probe_folds(features: list[np.ndarray], labels: np.ndarray, folds: list[tuple[list[int], list[int]]],
                    parts: list[tuple[list[int], list[int]]], classes: int, seed: int) -> dict[str, Any]:
    """hear-eval-kit's protocol on each fold: the MLP grid (models/audio/metrics.py, MLP_GRID) trained on the fold's
    fit clips, chosen by accuracy on its validation clips (`parts`, both inside its train clips), refit on both,
    scored on its test clips; the control runs the same with the train clips' labels shuffled."""
    correct, control, chosen = [], [], []
    for k, (_, test) in enumerate(folds):
        x = features[k if len(features) > 1 else 0]
        fit, validation = parts[k]
        predicted, trials = mlp_probe_predictions(x[fit], labels[fit], x[validation], labels[validation], x[test],
                                                  classes, seed)
        correct.append((predicted == labels[test]).astype(np.float64))
        chosen.append(trials["chosen"])
        order = fit + validation
        shuffled = np.random.default_rng(seed + k).permutation(labels[order])
        guessed, _ = mlp_probe_predictions(x[fit], shuffled[:len(fit)], x[validation], shuffled[len(fit):], x[test],
                                           classes, seed)
        control.append(guessed == labels[test])
    right = np.concatenate(correct)
    return {"accuracy": round(float(right.mean()), 4), "interval_95": _interval(right, seed=seed),
            "shuffled_label_control": round(float(np.concatenate(control).mean()), 4), "chosen": chosen}


def validation_parts(prepared: Prepared, seed: int) -> list[tuple[list[int], list[int]]]:
    """Per fold, (fit, validation) inside its train clips: the task's own (HEAR's valid split, with folds the next
    fold), else a seeded share of the train groups (`validation_part`)."""
    return [prepared.validation[k] if prepared.validation[k][1]
            else validation_part(train, prepared.groups, prepared.y, seed)
            for k, (train, _) in enumerate(prepared.folds)]


def probe_folds(features: list[np.ndarray], labels: np.ndarray, folds: list[tuple[list[int], list[int]]],
                seed: int) -> dict[str, Any]:
    """The linear probe of each fold (its own features: one array for all folds, or one per fold), every test
    clip's correctness pooled; the control pools the probes trained on shuffled labels alike."""
    correct, control = [], []
    for k, (train, test) in enumerate(folds):
        x = features[k if len(features) > 1 else 0]
        predicted = linear_probe_predictions(x[train], labels[train], x[test])
        correct.append((predicted == labels[test]).astype(np.float64))
        shuffled = np.random.default_rng(seed + k).permutation(labels[train])
        control.append(linear_probe_predictions(x[train], shuffled, x[test]) == labels[test])
    right = np.concatenate(correct)
    return {"accuracy": round(float(right.mean()), 4), "interval_95": _interval(right, seed=seed),
            "shuffled_label_control": round(float(np.concatenate(control).mean()), 4)}


@dataclass
class Prepared:
    """Either layout, ready for the probes: clip labels, the evaluation folds and the audio at any rate."""

    names: list[str]  # label names; y indexes them
    y: np.ndarray  # (clips,)
    folds: list[tuple[list[int], list[int]]]  # (train, test) clip indices per evaluation
    validation: list[tuple[list[int], list[int]]]  # per fold, (fit, validation) of its train clips: fine-tuning
    load: Callable[[int], list[np.ndarray]]  # sample rate -> every clip, mono float32 at that rate
    groups: list[str]  # per clip: clips of a group stay on one side of a validation part
    summary: dict[str, Any]  # what the report states about the data
    task: HearTask | None = None
    source_rates: dict[int, int] = field(default_factory=dict)  # HEAR: model rate -> the audio folder read
    files: list[str] = field(default_factory=list)  # per clip, its audio file (HEAR: at the task's highest rate)
    cache: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def audio(self, rate: int) -> list[np.ndarray]:
        if rate not in self.cache:
            self.cache[rate] = self.load(rate)
        return self.cache[rate]


def validation_part(train: list[int], groups: list[str], y: np.ndarray, seed: int) -> tuple[list[int], list[int]]:
    """(fit, validation): a seeded VALIDATION_FRACTION of the train clips' groups held out for fine-tuning, never
    a label's last group (a label whose every train clip is one group, one instrument of a family, stays in fit:
    held out, the fit would not know it and the validation could not score it). When no group can be held out
    that way, a seeded VALIDATION_FRACTION of the train clips is: validation then hears groups the fit heard."""
    names = sorted({groups[i] for i in train})
    rng = np.random.default_rng(seed + 1)
    label_groups: dict[int, set[str]] = {}
    group_labels: dict[str, set[int]] = {}
    for i in train:
        for label in _labels_of(y, i):
            label_groups.setdefault(label, set()).add(groups[i])
            group_labels.setdefault(groups[i], set()).add(label)
    wanted = max(1, round(VALIDATION_FRACTION * len(names)))
    held: set[str] = set()
    for group in rng.permutation(names).tolist():
        if len(held) == wanted:
            break
        if all(label_groups[label] - held - {group} for label in group_labels[group]):
            held.add(group)
    if held:
        fit, validation = [i for i in train if groups[i] not in held], [i for i in train if groups[i] in held]
    else:
        chosen = set(rng.permutation(train)[:max(1, round(VALIDATION_FRACTION * len(train)))].tolist())
        fit, validation = [i for i in train if i not in chosen], [i for i in train if i in chosen]
    fit_labels = len({label for i in fit for label in _labels_of(y, i)})
    varies = (y[fit].min(axis=0) != y[fit].max(axis=0)).any() if y.ndim == 2 else fit_labels >= 2
    if not varies or not validation or (y.ndim == 2 and not y[validation].any()):
        raise LabelsError(f"fine-tuning and the MLP probe need a validation part of the train split: {len(train)} "
                          f"train clips in {len(names)} groups leave {len(fit)} fit clips with {fit_labels} "
                          f"label(s) and {len(validation)} validation clips"
                          + (" (a multilabel task: some label both present and absent in the fit clips, and a "
                             "label present in the validation clips)" if y.ndim == 2 else "") + "; add clips or groups")
    return fit, validation


def _labels_of(y: np.ndarray, clip: int) -> set[int]:
    """The labels of one clip: its class (y (clips,)), or the labels present in its row (y (clips, labels))."""
    return set(np.flatnonzero(y[clip]).tolist()) if y.ndim == 2 else {int(y[clip])}


def multilabel_validation_map(fit_x: np.ndarray, fit_y: np.ndarray, validation_x: np.ndarray,
                              validation_y: np.ndarray) -> float:
    """Fine-tuning's validation score on a multilabel task: the per-label linear probe's mAP."""
    return mean_average_precision(validation_y, _label_scores(fit_x, fit_y, validation_x))


def prepare_csv(data: Path, labels: Path, test_fraction: float, seed: int) -> Prepared:
    clips = read_labels(data, labels)
    train, test = split_clips(clips, test_fraction, seed)
    names = sorted({c.label for c in clips})
    y = np.array([names.index(c.label) for c in clips])
    if not train or not test or len(set(y[train])) < 2:
        raise LabelsError("the split leaves an empty side or a single training label: add clips or groups")
    summary = {"clips": len(clips), "labels": names, "train": len(train), "test": len(test),
               "groups": len({c.group for c in clips}), "split": "file" if all(c.split for c in clips) else
               f"{test_fraction:g} of the groups held out (seed {seed})", "chance": round(1 / len(names), 4)}
    return Prepared(names, y, [(train, test)], [([], [])], lambda rate: [load_audio(c.path, rate) for c in clips],
                    [c.group for c in clips], summary, files=[str(c.path) for c in clips])


def prepare_task(root: Path) -> Prepared:
    task = read_task(root)
    names = list(task.vocabulary)
    multilabel = task.embedding_type != EVENT and task.prediction_type == MULTILABEL
    if multilabel:  # (clips, labels) of 0/1
        y = np.array([[int(name in c.labels) for name in names] for c in task.clips])
    else:
        y = np.array([-1 if task.embedding_type == EVENT else names.index(c.labels[0]) for c in task.clips])
    folds = task.folds()
    for k, (train, test) in enumerate(folds):
        varies = (y[train].min(axis=0) != y[train].max(axis=0)).any() if multilabel else len(set(y[train])) >= 2
        if task.embedding_type != EVENT and not varies:
            raise HearTaskError([f"{root}: evaluation {k + 1} trains on a single label"
                                 + (" (no label is both present and absent in its train clips)" * multilabel)
                                 + ": add clips"])
        if not test:
            raise HearTaskError([f"{root}: evaluation {k + 1} has no test clips"])
    if task.mode == FOLDS:  # HEAR's protocol: the fold after the held-out one validates
        validation = [([i for i in train if task.clips[i].split != task.splits[(k + 1) % len(task.splits)]],
                       task.indices(task.splits[(k + 1) % len(task.splits)])) for k, (train, _) in enumerate(folds)]
        split = f"{len(folds)} folds, each held out in turn (test figures pool every clip's held-out prediction)"
    else:
        valid = task.indices("valid")
        validation = [([i for i in folds[0][0] if i not in set(valid)], valid)] if valid else [([], [])]
        split = "train" + (" + valid" if valid else "") + " -> test"
    summary = {"clips": len(task.clips), "labels": names, "train": len(folds[0][0]), "test": len(folds[0][1]),
               "groups": None, "split": split, "chance": None if multilabel else round(1 / len(names), 4),
               "task": task.name, "embedding_type": task.embedding_type, "sample_rates": list(task.sample_rates),
               "prediction_type": task.prediction_type}

    sources: dict[int, int] = {}

    def load(rate: int) -> list[np.ndarray]:
        sources[rate] = task.rate_for(rate)
        return [_task_audio(task.audio_path(c, sources[rate]), rate) for c in task.clips]

    return Prepared(names, y, folds, validation, load, [c.file for c in task.clips], summary, task, sources,
                    files=[str(task.audio_path(c, max(task.sample_rates))) for c in task.clips])


def _task_audio(path: Path, rate: int) -> np.ndarray:
    try:
        return load_audio(path, rate)
    except (RuntimeError, soundfile.LibsndfileError, LabelsError) as error:
        raise HearTaskError([f"{path}: unreadable audio ({error})"]) from error


def _log_mel_statistics(audio: list[np.ndarray]) -> np.ndarray:
    statistics = LogMelStatistics(FrontEndConfig()).eval()
    with torch.no_grad():
        return np.stack([statistics(torch.from_numpy(a)[None]).numpy()[0] for a in audio])


def fine_tuned_features(prepared: Prepared, repository: Path, epochs: int, seed: int, progress: bool,
                         learning_rates: Sequence[float], architecture: str = "bow"
                         ) -> tuple[list[np.ndarray], dict[str, Any], list[WaveformEmbedder]]:
    """Per fold: the embedder (`architecture`: bow or passt) fine-tuned on that fold's fit clips, every clip's
    scene embedding. With several `learning_rates` each one fine-tunes from the same start and the rate (with
    its epoch) whose validation probe scores best is kept (a tie: the first given); the validation clips choose,
    the test clips are never read."""
    front = FrontEndConfig()
    windows = tuning.Windows(prepared.audio(front.sample_rate), front)
    features, runs, models = [], [], []
    scorer = multilabel_validation_map if prepared.y.ndim == 2 else linear_probe_accuracy
    for fit, validation in validation_parts(prepared, seed):
        fit_windows = windows.of(fit)

        def tune(model: WaveformEmbedder, learning_rate: float, fit: list[int] = fit,
                 validation: list[int] = validation) -> tuple[WaveformEmbedder, dict[str, Any]]:
            return tuning.fine_tune(model, windows, prepared.y, fit, validation, epochs, seed, progress,
                                    learning_rate, scorer=scorer)

        model, run = _best_rate(prepared, repository, architecture, seed, learning_rates,
                                windows.waveforms[fit_windows[:8]], partial(windows.mels.__getitem__, fit_windows),
                                tune)
        features.append(tuning.scene_embeddings(model, windows))
        runs.append({"fit": len(fit), "validation": len(validation), **run})
        models.append(model)
    return features, {"epochs": epochs, "embedder": architecture, "folds": runs}, models


TRAIN_FRAME_STRIDE = 4  # event tasks: fine-tuning trains on every 4th timestamp window of a fit clip (200 ms)


def fine_tuned_timestamp_features(prepared: Prepared, repository: Path, epochs: int, seed: int, progress: bool,
                                  learning_rates: Sequence[float], architecture: str, hop_ms: float,
                                  window_ms: float) -> tuple[list[list[np.ndarray]], dict[str, Any],
                                                             list[WaveformEmbedder]]:
    """An event task, per fold: the embedder fine-tuned on the timestamp windows of that fold's fit clips (every
    TRAIN_FRAME_STRIDE-th), each labelled with its frame's 0/1 targets (per-label binary cross-entropy); the
    rate and epoch chosen by the frame probe's onset F-measure on the validation clips (`event_probe`, fitted
    on the fit clips' frames); every clip's timestamp embeddings from the fine-tuned model."""
    task = prepared.task
    assert task is not None
    front = FrontEndConfig()
    frames = tuning.Frames(prepared.audio(front.sample_rate), front, hop_ms, window_ms)
    targets = frame_targets(task, frames.stamps)
    presence = np.stack([t.max(axis=0) if len(t) else np.zeros(len(task.vocabulary)) for t in targets])
    clips, features, runs, models = len(frames.audio), [], [], []
    for k, (train, _) in enumerate(prepared.folds):
        fit, validation = (prepared.validation[k] if prepared.validation[k][1]
                           else validation_part(train, prepared.groups, presence, seed))
        examples = tuning.frame_examples(frames, targets, fit, TRAIN_FRAME_STRIDE)

        def score(model: WaveformEmbedder, fit: list[int] = fit, validation: list[int] = validation) -> float:
            needed = set(fit) | set(validation)
            embedded = [frames.embeddings(model, c) if c in needed else np.zeros((0, 1)) for c in range(clips)]
            return float(event_probe(embedded, frames.stamps, task, [(fit, validation)], seed,
                                     resamples=1)["onset_f_measure"])

        def tune(model: WaveformEmbedder, learning_rate: float, examples: tuning.Examples = examples,
                 score: Callable[[WaveformEmbedder], float] = score) -> tuple[WaveformEmbedder, dict[str, Any]]:
            model, run = tuning.fine_tune_examples(model, examples, len(task.vocabulary), score, epochs, seed,
                                                   progress, learning_rate)
            return model, {**run, "validation_metric": "onset F-measure"}

        model, run = _best_rate(prepared, repository, architecture, seed, learning_rates,
                                _first_frames(frames, fit), partial(_all_mels, examples), tune)
        features.append([frames.embeddings(model, c) for c in range(clips)])
        runs.append({"fit": len(fit), "validation": len(validation), "fit_frames": examples.count, **run})
        models.append(model)
    return features, {"epochs": epochs, "embedder": architecture, "folds": runs}, models


def _first_frames(frames: tuning.Frames, clips: list[int], count: int = 8) -> np.ndarray:
    """A few timestamp windows of `clips` (waveforms): what the read-back weights are checked on."""
    pairs = [(c, f) for c in clips for f in range(len(frames.stamps[c]))][:count]
    return frames.waveforms(np.array(pairs))


def _all_mels(examples: tuning.Examples) -> torch.Tensor:
    return examples.mels(torch.arange(examples.count))


def final_fit(prepared: Prepared, repository: Path, tuned: dict[str, Any], seed: int, progress: bool,
              hop_ms: float = hear.TIMESTAMP_HOP_MS, window_ms: float = hear.TIMESTAMP_WINDOW_MS
              ) -> tuple[WaveformEmbedder, dict[str, Any]]:
    """With folds, what is exported: the embedder fine-tuned once more on every clip, at the rate the folds'
    validation chose most often (a tie: the first given) for the median of their chosen epochs, the last epoch
    kept (nothing is left to choose with); the folds' figures stand for it."""
    folds, architecture = tuned["folds"], tuned["embedder"]
    rates = [g["learning_rate"] for g in folds[0]["learning_rate_grid"]]
    chosen = [run["learning_rate"] for run in folds]
    learning_rate = max(rates, key=lambda r: (chosen.count(r), -rates.index(r)))
    epochs = int(np.round(np.median([run["chosen_epoch"] for run in folds])))
    everything = sorted({i for train, test in prepared.folds for i in (*train, *test)})
    front = FrontEndConfig()
    audio = prepared.audio(front.sample_rate)
    examples: tuning.Examples
    if prepared.task is not None and prepared.task.embedding_type == EVENT:
        frames = tuning.Frames(audio, front, hop_ms, window_ms)
        examples = tuning.frame_examples(frames, frame_targets(prepared.task, frames.stamps), everything,
                                         TRAIN_FRAME_STRIDE)
        check, classes = _first_frames(frames, everything), len(prepared.task.vocabulary)
    else:
        windows = tuning.Windows(audio, front)
        examples = tuning.scene_examples(windows, prepared.y, everything)
        check = windows.waveforms[windows.of(everything)[:8]]
        classes = prepared.y.shape[1] if prepared.y.ndim == 2 else int(prepared.y.max()) + 1
    model, start = _fine_tuning_start(len(prepared.names), repository / fine_tuned_model_name(architecture), check,
                                      partial(_all_mels, examples), seed, architecture)
    model, run = tuning.fine_tune_examples(model, examples, classes, None, epochs, seed, progress, learning_rate)
    return model, {"start": start, "clips": len(everything), "learning_rate": learning_rate, "epochs": epochs,
                   "train_seconds": run["train_seconds"]}


def _best_rate(prepared: Prepared, repository: Path, architecture: str, seed: int, learning_rates: Sequence[float],
               check: np.ndarray, fit_mels: Callable[[], torch.Tensor],
               tune: Callable[[WaveformEmbedder, float], tuple[WaveformEmbedder, dict[str, Any]]]
               ) -> tuple[WaveformEmbedder, dict[str, Any]]:
    """`tune` from the same start at each rate; the model of the rate whose best epoch scores highest on
    validation (a tie: the first given) and its run, with every rate's best score (`learning_rate_grid`)."""
    if not learning_rates or min(learning_rates) <= 0:
        raise ValueError(rates_problem(learning_rates))
    start_model, start = _fine_tuning_start(len(prepared.names), repository / fine_tuned_model_name(architecture),
                                            check, fit_mels, seed, architecture)
    grid: list[dict[str, Any]] = []
    best, kept = -1.0, None
    for learning_rate in learning_rates:  # each from a copy of the one start (read back or trained once)
        candidate, run = tune(copy.deepcopy(start_model), learning_rate)
        score = max(h["validation_score"] for h in run["history"] if "epoch" in h)
        grid.append({"learning_rate": learning_rate, "chosen_epoch": run["chosen_epoch"],
                     "validation_score": score, "train_seconds": run["train_seconds"]})
        if score > best:
            best, kept = score, (candidate, {"start": start, **run})
    assert kept is not None
    return kept[0], {**kept[1], "learning_rate_grid": grid}


def rates_problem(learning_rates: Sequence[float]) -> str:
    return f"--learning-rate takes one or more rates > 0, got {list(learning_rates)}"


def learning_rate_words(run: dict[str, Any]) -> str:
    """'1e-04', or with a grid: every rate tried with its best validation score, and the one kept."""
    grid = run.get("learning_rate_grid", [])
    if len(grid) < 2:
        return f"{run['learning_rate']:g}"
    tried = ", ".join(f"{g['learning_rate']:g} (validation {g['validation_score']:.3f} at epoch "
                      f"{g['chosen_epoch']})" for g in grid)
    return f"{run['learning_rate']:g}, chosen on the validation clips among {tried}"


def _fine_tuning_start(classes: int, shipped: Path, check: np.ndarray, fit_mels: Callable[[], torch.Tensor],
                       seed: int, architecture: str) -> tuple[WaveformEmbedder, str]:
    """The embedder fine-tuning starts from (the shipped graph's weights read back and checked on `check`, a few
    of the fit windows; else a fresh one, the bag of words trained on `fit_mels()`) and what it is, in words."""
    model, start = tuning.read_back(shipped, classes, check, architecture)
    if model is None and architecture == "bow":
        config, front_config, _ = tuning.shipped_config(shipped)
        model = tuning.from_scratch(config, front_config, classes, fit_mels(), seed)
        start = f"trained from scratch on your fit clips (no shipped torch weights: {start})"
    elif model is None:
        torch.manual_seed(seed)
        model = tuning.shipped_model(shipped, architecture, classes)
        start = f"trained from scratch on your fit clips, from a random start (no shipped torch weights: {start})"
    return model, start


def fine_tuned_model_name(architecture: str) -> str:
    """The repository model a fine-tuned `architecture` (bow or passt) starts from and is exported as."""
    return EMBEDDERS[ARCHITECTURE_TITLES[architecture]]


def frozen_features(prepared: Prepared, repository: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, int]]:
    """Every clip's scene features from log-mel statistics and each shipped embedder (frozen; one array, for
    every fold), and the sample rate each embedder read."""
    rate = FrontEndConfig().sample_rate
    features: dict[str, list[np.ndarray]] = {BASELINE: [_log_mel_statistics(prepared.audio(rate))]}
    rates: dict[str, int] = {}
    for title, model_name in EMBEDDERS.items():
        model = hear.load_model(str(repository / model_name), threads=1)
        features[title] = [np.stack([hear.get_scene_embeddings(torch.from_numpy(a)[None], model).numpy()[0]
                                     for a in prepared.audio(model.sample_rate)])]
        rates[title] = model.sample_rate
    return features, rates


def evaluate_prepared(prepared: Prepared, repository: Path, seed: int = 0, fine_tune_epochs: int = 0,
                      progress: bool = False, learning_rates: Sequence[float] = (tuning.LEARNING_RATE,),
                      mlp: bool = False,
                      hear_modules: dict[str, tuple[str, str]] | None = None,
                      fine_tune_embedder: str = "bow") -> tuple[dict[str, Any], list[Any]]:
    """(the result, the fine-tuned models, one per fold): every embedder's probe on the same folds; with `mlp`,
    the MLP probe (hear-eval-kit's protocol) beside the linear one, in result["mlp_probe"]; `hear_modules`
    (title -> (interpreter, HEAR API module)) are embedders run out of process on the clips' files."""
    if prepared.task is not None and prepared.task.embedding_type == EVENT:
        if mlp:
            raise LabelsError(f"--probe mlp is for scene tasks; {prepared.task.root} is an event task (its probe "
                              "is a frame-level linear one)")
        return evaluate_events(prepared, repository, seed, hear_modules,
                               FineTuning(fine_tune_epochs, progress, learning_rates, fine_tune_embedder))
    multilabel = prepared.task is not None and prepared.task.prediction_type == MULTILABEL
    if multilabel and mlp:
        raise LabelsError(f"{prepared.task.root if prepared.task else ''} is a multilabel scene task: its probe is "
                          "the linear one per label (mAP); the MLP probe is for multiclass tasks")
    parts = validation_parts(prepared, seed) if mlp else []
    features, rates = frozen_features(prepared, repository)
    for title, (python, module) in (hear_modules or {}).items():
        with tempfile.TemporaryDirectory() as work:
            vectors = hear_module_features(prepared.files, python, module, Path(work))
        features[title] = [np.stack([vectors[f] for f in prepared.files])]
    models: list[Any] = []
    result: dict[str, Any] = {**prepared.summary}
    if fine_tune_epochs > 0:
        features[FINE_TUNED_TITLES[fine_tune_embedder]], result["fine_tune"], models = fine_tuned_features(
            prepared, repository, fine_tune_epochs, seed, progress, learning_rates, fine_tune_embedder)
    score = multilabel_probe_folds if multilabel else probe_folds
    result["embedders"] = {title: score(x, prepared.y, prepared.folds, seed) for title, x in features.items()}
    if mlp:
        result["mlp_probe"] = {title: mlp_probe_folds(x, prepared.y, prepared.folds, parts, len(prepared.names), seed)
                               for title, x in features.items()}
        result["mlp_validation"] = [{"fit": len(fit), "validation": len(validation)} for fit, validation in parts]
    if prepared.task is not None:
        result["audio_folder_rate"] = {t: prepared.source_rates[r] for t, r in rates.items()}
    return result, models


def evaluate(data: Path, labels: Path, repository: Path, test_fraction: float = 0.25, seed: int = 0,
             fine_tune_epochs: int = 0) -> dict[str, Any]:
    return evaluate_prepared(prepare_csv(data, labels, test_fraction, seed), repository, seed, fine_tune_epochs)[0]


# --- event (timestamp) tasks ---------------------------------------------------------------------------------


def frame_targets(task: HearTask, timestamps_ms: list[np.ndarray]) -> list[np.ndarray]:
    """Per clip (T, labels) 0/1: a label is active at t when one of its events has start <= t <= end."""
    index = {label: i for i, label in enumerate(task.vocabulary)}
    targets = []
    for clip, stamps in zip(task.clips, timestamps_ms, strict=True):
        active = np.zeros((len(stamps), len(index)))
        for event in clip.events:
            active[(stamps >= event.start_ms) & (stamps <= event.end_ms), index[event.label]] = 1
        targets.append(active)
    return targets


def predicted_onsets(probabilities: np.ndarray, timestamps_ms: np.ndarray) -> list[np.ndarray]:
    """(T, labels) -> per label the onset times (s): the first timestamp of each run of active frames."""
    active = median_filter((probabilities > FRAME_THRESHOLD).astype(np.int8), size=(MEDIAN_FRAMES, 1),
                           mode="nearest") > 0
    rising = active & ~np.vstack([np.zeros((1, active.shape[1]), bool), active[:-1]])
    return [timestamps_ms[rising[:, j]] / 1000.0 for j in range(active.shape[1])]


def _frame_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """(frames, labels) probabilities: one logistic regression (standardised inputs) per label; a label the
    train frames never (or always) show gets its constant."""
    out = np.zeros((len(test_x), train_y.shape[1]))
    for j in range(train_y.shape[1]):
        if len(np.unique(train_y[:, j])) < 2:
            out[:, j] = train_y[0, j] if len(train_y) else 0.0
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        out[:, j] = model.fit(train_x, train_y[:, j]).predict_proba(test_x)[:, 1]
    return out


def _onset_counts(task: HearTask, clip: int, probabilities: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """(hits, reference onsets, estimated onsets) of one clip over its labels."""
    counts = np.zeros(3)
    for j, estimated in enumerate(predicted_onsets(probabilities, stamps)):
        reference = np.array([e.start_ms / 1000.0 for e in task.clips[clip].events
                              if e.label == task.vocabulary[j]])
        counts += (onset_matches(reference, estimated, ONSET_TOLERANCE_S), len(reference), len(estimated))
    return counts


def f_from_counts(counts: np.ndarray) -> float:
    """Onset F-measure from (hits, reference onsets, estimated onsets), one row per clip or their sum."""
    hits, references, estimated = counts.sum(0) if counts.ndim > 1 else counts
    return float(2 * hits / max(references + estimated, 1))


def event_probe(embeddings: list[np.ndarray] | list[list[np.ndarray]], stamps: list[np.ndarray], task: HearTask,
                folds: list[tuple[list[int], list[int]]], seed: int, resamples: int = 2000) -> dict[str, Any]:
    """Onset F-measure of the frame probe over the pooled test clips, its bootstrap interval over those clips,
    and the control: the same probe trained on the train frames' targets shuffled across frames. `embeddings`:
    per clip (T, D); or per fold, per clip (each fold's own embedder: fine-tuned on that fold's fit clips)."""
    targets = frame_targets(task, stamps)
    counts: list[np.ndarray] = []
    control: list[np.ndarray] = []
    per_fold = isinstance(embeddings[0], list)
    for k, (train, test) in enumerate(folds):
        fold = embeddings[k] if per_fold else embeddings
        train_x, train_y = np.concatenate([fold[i] for i in train]), np.concatenate([targets[i] for i in train])
        shuffled = train_y[np.random.default_rng(seed + k).permutation(len(train_y))]
        for trained_on, out in ((train_y, counts), (shuffled, control)):
            probabilities = _frame_probe(train_x, trained_on, np.concatenate([fold[i] for i in test]))
            bounds = np.cumsum([0, *(len(fold[i]) for i in test)])
            out.extend(_onset_counts(task, i, probabilities[a:b], stamps[i])
                       for i, a, b in zip(test, bounds[:-1], bounds[1:], strict=True))
    per_clip = np.array(counts)
    rng = np.random.default_rng(seed)
    draws = [f_from_counts(per_clip[rng.integers(0, len(per_clip), len(per_clip))]) for _ in range(resamples)]
    hits, references, estimated = per_clip.sum(0)
    return {"onset_f_measure": round(f_from_counts(per_clip), 4),
            "interval_95": [round(float(np.quantile(draws, q)), 4) for q in (0.025, 0.975)],
            "shuffled_label_control": round(f_from_counts(np.array(control)), 4),
            "precision": round(float(hits / max(estimated, 1)), 4),
            "recall": round(float(hits / max(references, 1)), 4),
            "per_clip_counts": per_clip.astype(int).tolist()}  # (hits, reference, estimated) per test clip


def paired_onset_difference(a: dict[str, Any], b: dict[str, Any], seed: int, resamples: int = 2000) -> dict[str, Any]:
    """F-measure of `a` minus that of `b` (two `event_probe` results on the same test clips), with a paired
    bootstrap 95% interval: the same resampled clips for both."""
    first, second = np.array(a["per_clip_counts"]), np.array(b["per_clip_counts"])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(first), len(first))
        draws.append(f_from_counts(first[pick]) - f_from_counts(second[pick]))
    return {"difference": round(f_from_counts(first) - f_from_counts(second), 4),
            "interval_95": [round(float(np.quantile(draws, q)), 4) for q in (0.025, 0.975)]}


def _statistics_at_timestamps(audio: list[np.ndarray], rate: int, hop_ms: float,
                              window_ms: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Log-mel statistics of the windows the embedders see at each timestamp (centred, `window_ms` of audio)."""
    front = FrontEndConfig()
    statistics = LogMelStatistics(front).eval()
    features, stamps = [], []
    for sound in audio:
        count = audio_windows.timestamp_count(len(sound), rate, hop_ms)
        times = audio_windows.timestamps_ms(count, hop_ms)
        cut = audio_windows.centred_windows(sound, 0, audio_windows.centre_sample(times, rate), front.window_samples,
                                            round(window_ms * rate / 1000))
        with torch.no_grad():
            features.append(statistics(torch.from_numpy(cut)).numpy())
        stamps.append(times)
    return features, stamps


@dataclass(frozen=True)
class FineTuning:
    """--fine-tune EPOCHS (0: none) and how."""

    epochs: int = 0
    progress: bool = False
    learning_rates: Sequence[float] = (tuning.LEARNING_RATE,)
    embedder: str = "bow"


def evaluate_events(prepared: Prepared, repository: Path, seed: int,
                    hear_modules: dict[str, tuple[str, str]] | None = None,
                    fine_tuning: FineTuning = FineTuning()) -> tuple[dict[str, Any], list[WaveformEmbedder]]:
    """The frame probe's onset F-measure per embedder: log-mel statistics of the same windows, the repository's
    embedders, `hear_modules` (title -> (interpreter, HEAR API module), run out of process), the embedder
    fine-tuned on the fit clips' frames when `fine_tuning.epochs` > 0; and PaSST's paired difference from each
    of the others (`paired_onset_difference`). Also the fine-tuned models, one per fold."""
    task = prepared.task
    assert task is not None
    results, rates = {}, {}
    for title, model_name in EMBEDDERS.items():
        model = hear.load_model(str(repository / model_name), threads=1)
        pairs = [hear.get_timestamp_embeddings(torch.from_numpy(a)[None], model)
                 for a in prepared.audio(model.sample_rate)]
        embeddings, stamps = [e.numpy()[0] for e, _ in pairs], [t.numpy()[0].astype(np.float64) for _, t in pairs]
        results[title] = event_probe(embeddings, stamps, task, prepared.folds, seed)
        rates[title] = model.sample_rate
        if BASELINE not in results:  # the same windows as the first embedder, described by log-mel statistics
            features, baseline_stamps = _statistics_at_timestamps(
                prepared.audio(model.sample_rate), model.sample_rate, model.timestamp_hop_ms, model.timestamp_window_ms)
            results[BASELINE] = event_probe(features, baseline_stamps, task, prepared.folds, seed)
    for title, (python, module) in (hear_modules or {}).items():
        with tempfile.TemporaryDirectory() as work:
            timed = hear_module_timestamps(prepared.files, python, module, Path(work))
        results[title] = event_probe([e for e, _ in timed], [t for _, t in timed], task, prepared.folds, seed)
    models: list[WaveformEmbedder] = []
    tuned: dict[str, Any] = {}
    if fine_tuning.epochs > 0:
        reference_model = hear.load_model(str(repository / next(iter(EMBEDDERS.values()))), threads=1)
        per_fold, tuned, models = fine_tuned_timestamp_features(
            prepared, repository, fine_tuning.epochs, seed, fine_tuning.progress, fine_tuning.learning_rates,
            fine_tuning.embedder, reference_model.timestamp_hop_ms, reference_model.timestamp_window_ms)
        stamps = tuning.Frames(prepared.audio(FrontEndConfig().sample_rate), FrontEndConfig(),
                               reference_model.timestamp_hop_ms, reference_model.timestamp_window_ms).stamps
        results[FINE_TUNED_TITLES[fine_tuning.embedder]] = event_probe(per_fold, stamps, task, prepared.folds, seed)
    tested = {i for _, test in prepared.folds for i in test}
    embedders = {BASELINE: results.pop(BASELINE), **results}
    reference = next(iter(EMBEDDERS))
    return {**prepared.summary, "chance": None, "test_onsets": sum(len(task.clips[i].events) for i in tested),
            "embedders": embedders,
            "paired": {f"{reference} - {title}": paired_onset_difference(embedders[reference], r, seed)
                       for title, r in embedders.items() if title != reference},
            "audio_folder_rate": {t: prepared.source_rates[r] for t, r in rates.items()},
            **({"fine_tune": tuned} if tuned else {})}, models


# --- report and command line ---------------------------------------------------------------------------------


def event_table(result: dict[str, Any], audio: str) -> list[str]:
    """An event task's report lines: the probe, the F-measure per embedder, PaSST's paired differences."""
    lines = [
        f"Frame-level linear probe on frozen timestamp embeddings (one logistic regression per label), onset "
        f"F-measure within +-{ONSET_TOLERANCE_S * 1000:.0f} ms; interval: bootstrap over test clips; control: the "
        "probe trained on shuffled frame labels.", "",
        "| embedder | onset F-measure | 95% interval | precision | recall | shuffled-label control |",
        "|---|---|---|---|---|---|"]
    for name, r in result["embedders"].items():
        lines.append(f"| {name} | {r['onset_f_measure']:.4f} | {r['interval_95'][0]:.4f}-{r['interval_95'][1]:.4f}"
                     f" | {r['precision']:.4f} | {r['recall']:.4f} | {r['shuffled_label_control']:.4f} |")
    if result.get("paired"):
        lines += ["", "Paired differences (the same test clips resampled for both; bootstrap 95%):", "",
                  "| difference | F-measure | 95% interval |", "|---|---|---|"]
        lines += [f"| {name} | {d['difference']:+.4f} | {d['interval_95'][0]:+.4f} to {d['interval_95'][1]:+.4f} |"
                  for name, d in result["paired"].items()]
    if HEAR_BASELINE in result["embedders"]:
        lines += ["", hear_baseline_note(audio)]
    return lines


def fine_tune_lines(result: dict[str, Any]) -> list[str]:
    """The report's fine-tuning paragraph (none without --fine-tune)."""
    if "fine_tune" not in result:
        return []
    tuned = result["fine_tune"]
    lines: list[str] = []
    metric = tuned["folds"][0].get("validation_metric", "accuracy")
    loss = {"mAP": "per-label binary cross-entropy on the fit clips' windows",
            "onset F-measure": "per-label binary cross-entropy on the frame targets of the fit clips' timestamp "
                               f"windows (every {TRAIN_FRAME_STRIDE}th)"}.get(metric,
                                                                             "cross-entropy on the fit clips' windows")
    probe = "the frame probe's" if metric == "onset F-measure" else "a linear probe's"
    lines += ["", f"Fine-tuning {tuning.ARCHITECTURES[tuned.get('embedder', 'bow')]} ({tuned['epochs']} epochs of "
              f"{loss}, AdamW " + learning_rate_words(tuned["folds"][0])
              + f", the epoch chosen by {probe} {metric} on the validation clips, epoch 0 being the "
              "start; the test clips are not read):", ""]
    for k, run in enumerate(tuned["folds"]):
        curve = ", ".join(f"{h['epoch']}: {h['validation_score']:.3f}" for h in run["history"] if "epoch" in h)
        which = f"evaluation {k + 1}: " if len(tuned["folds"]) > 1 else ""
        lines.append(f"- {which}start: {run['start']}; {run['fit']} fit, {run['validation']} validation clips; "
                     f"validation {metric} by epoch {curve}; chosen epoch {run['chosen_epoch']} "
                     f"({run['train_seconds']:.0f} s)")
    if "final_fit" in tuned:
        f = tuned["final_fit"]
        lines.append(f"- exported: fine-tuned once more on all {f['clips']} clips (every fold's train and test), at "
                     f"the rate the folds chose most often ({f['learning_rate']:g}) for the median of their chosen "
                     f"epochs ({f['epochs']}; 0: the start, the shipped weights), the last epoch kept; the folds' "
                     f"figures above estimate it ({f['train_seconds']:.0f} s; start: {f['start']})")
    if "exported" in tuned:
        lines.append(f"- exported: `{tuned['exported']}`")
    return lines


def render(result: dict[str, Any], command: str, seconds: float) -> str:
    task = f"HEAR task {result['task']!r} ({result['embedding_type']}), " if "task" in result else ""
    produced = (f"Produced by `{command}` ({seconds:.0f} s wall): {task}{result['clips']} clips, "
                f"{len(result['labels'])} labels ({', '.join(result['labels'])})")
    if result.get("embedding_type") == EVENT:
        return "\n".join(["# Audio embeddings on your recordings (event onsets)", "",
                          f"{produced}; split: {result['split']} ({result['test_onsets']} test onsets).",
                          *event_table(result, "your audio"), *fine_tune_lines(result)]) + "\n"
    groups = f", {result['groups']} groups" if result.get("groups") is not None else ""
    if result.get("prediction_type") == MULTILABEL:
        lines = [
            "# Audio embeddings on your recordings (multilabel)", "",
            f"{produced}, one or more per clip; split: {result['split']} "
            f"({result['train']} train, {result['test']} test clips). Linear probe on frozen scene embeddings, one "
            "logistic regression per label; mean average precision over the labels present among the test clips "
            "(HEAR's mAP); interval: bootstrap over test clips; control: the probes trained on the train clips' "
            "label rows shuffled.", "",
            "| embedder | test mAP | 95% interval | shuffled-label control | labels scored |", "|---|---|---|---|---|"]
        for name, r in result["embedders"].items():
            lines.append(f"| {name} | {r['mAP']:.4f} | {r['interval_95'][0]:.4f}-{r['interval_95'][1]:.4f} | "
                         f"{r['shuffled_label_control']:.4f} | {r['labels_scored']} |")
        return "\n".join(lines + fine_tune_lines(result)) + "\n"
    lines = [
        "# Audio embeddings on your recordings", "",
        f"{produced}{groups}; split: {result['split']} "
        f"({result['train']} train, {result['test']} test clips). Linear probe on frozen scene embeddings; interval: "
        f"bootstrap over test clips; control: the probe trained on shuffled labels (chance {result['chance']}).", "",
        "| embedder | test accuracy | 95% interval | shuffled-label control |", "|---|---|---|---|"]
    for name, r in result["embedders"].items():
        lines.append(f"| {name} | {r['accuracy']:.4f} | {r['interval_95'][0]:.4f}-{r['interval_95'][1]:.4f} | "
                     f"{r['shuffled_label_control']:.4f} |")
    if HEAR_BASELINE in result["embedders"]:
        lines += ["", hear_baseline_note("your files")]
    if "mlp_probe" in result:
        sizes = "; ".join(f"{p['fit']} fit + {p['validation']} validation clips" for p in result["mlp_validation"])
        lines += ["", "MLP probe (hear-eval-kit's protocol: one hidden layer, dropout, Adam, early stopping; learning "
                  "rate x width x dropout chosen by accuracy on validation clips inside the train split "
                  f"({sizes}), refit on both, scored on the same test clips):", "",
                  "| embedder | test accuracy | 95% interval | shuffled-label control "
                  "| chosen (rate, width, dropout) |",
                  "|---|---|---|---|---|"]
        for name, r in result["mlp_probe"].items():
            chosen = "; ".join(f"{c['learning_rate']:g}, {c['hidden']}, {c['dropout']:g}" for c in r["chosen"])
            lines.append(f"| {name} | {r['accuracy']:.4f} | {r['interval_95'][0]:.4f}-{r['interval_95'][1]:.4f} | "
                         f"{r['shuffled_label_control']:.4f} | {chosen} |")
    lines += fine_tune_lines(result)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.user_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=("csv", "hear"), default="csv",
                        help="csv: --data folder + --labels CSV; hear: --data is a HEAR 2021 task folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of recordings, or the HEAR task folder")
    parser.add_argument("--labels", type=Path, default=None, help="CSV: file,label[,split][,group] (csv format)")
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"),
                        help="model repository holding audio-passt-fp32 and audio-bow-fp32")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS",
                        help="also fine-tune an embedder on the train split for EPOCHS (0: frozen only)")
    parser.add_argument("--fine-tune-embedder", choices=tuple(FINE_TUNED_TITLES), default="bow",
                        help="the embedder --fine-tune trains: bow (the bag of words) or passt")
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[tuning.LEARNING_RATE],
                        help="fine-tuning's AdamW rate; several: each fine-tunes from the same start and the "
                             "validation clips choose the rate and its epoch")
    parser.add_argument("--out-repository", type=Path, default=None,
                        help="export the fine-tuned embedder here as audio-bow-fp32 or audio-passt-fp32 (with "
                             "--fine-tune)")
    parser.add_argument("--probe", choices=("linear", "both"), default="linear",
                        help="both: the MLP probe (hear-eval-kit's protocol, a grid chosen on validation clips inside "
                             "the train split) beside the linear one (scene tasks and the CSV layout)")
    parser.add_argument("--hear-baseline", default=None, metavar="PYTHON",
                        help="also the public HEAR 2021 baseline (hearbaseline), run by this interpreter of its own "
                             "environment (make hear-baseline: .hear-baseline-venv/bin/python)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for fine-tuning")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--report", type=Path, default=Path("artifacts/audio-user/quality.md"))
    args = parser.parse_args(argv)
    if args.format == "csv" and args.labels is None:
        parser.error("--labels is required with --format csv")
    if args.out_repository is not None and args.fine_tune < 1:
        parser.error("--out-repository exports the fine-tuned embedder: give --fine-tune EPOCHS too")
    if args.fine_tune < 0:
        parser.error("--fine-tune takes a number of epochs >= 0")
    if min(args.learning_rate) <= 0:
        parser.error(rates_problem(args.learning_rate))
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        prepared = (prepare_task(args.data) if args.format == "hear"
                    else prepare_csv(args.data, args.labels, args.test_fraction, args.seed))
        result, models = evaluate_prepared(prepared, args.repository, args.seed, args.fine_tune,
                                           not args.no_progress, args.learning_rate, args.probe == "both",
                                           {HEAR_BASELINE: (args.hear_baseline, "hearbaseline")}
                                           if args.hear_baseline else None, args.fine_tune_embedder)
    except (LabelsError, HearTaskError) as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    if args.out_repository is not None:
        exported = models[0]
        if len(prepared.folds) > 1:  # each fold fine-tuned its own: one more on every clip is what ships
            exported, result["fine_tune"]["final_fit"] = final_fit(prepared, args.repository, result["fine_tune"],
                                                                   args.seed, not args.no_progress)
        checkpoint = tuning.save_checkpoint(args.report.with_name(f"{args.fine_tune_embedder}_fine_tuned.pt"),
                                            exported, result["fine_tune"], str(args.data))
        result["fine_tune"]["exported"] = str(tuning.export(checkpoint, args.out_repository,
                                                            fine_tuned_model_name(args.fine_tune_embedder)))
    command = "python -m models.audio.user_data " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_report(args.report, render(result, command, time.perf_counter() - started), result)
    return result


if __name__ == "__main__":
    main()
