"""A HEAR 2021 task folder as input of `python -m models.audio.user_data --format hear --data TASK_DIR` (issue 24).

The layout (hear-preprocess's output, Turian et al., "HEAR: Holistic Evaluation of Audio Representations",
PMLR 176, 2022):

    TASK_DIR/task_metadata.json        the task (keys below)
    TASK_DIR/<split>.json              its labels, one file per split
    TASK_DIR/<sample rate>/<split>/<file>   its audio, at each sample rate the task ships (e.g. 16000/, 32000/)

task_metadata.json needs `task_name`, `mode` ("train/valid/test" or "folds"; hear-preprocess's `split_mode`
"trainvaltest" / "*folds" is read too) and `embedding_type` ("scene" or "event"); it may give
`label_vocabulary` (a list: every label must be in it; else the labels found make the vocabulary, or
hear-preprocess's labelvocabulary.csv with a `label` column), `prediction_type` (scene tasks: "multiclass",
one label per file, the default; or "multilabel", one or more per file), `sample_rate` or `sample_rates` (else
every numeric folder), `split_names` (else train, valid, test, where valid is optional, or fold00 ..
fold<nfolds - 1> from `nfolds`).

Label files: scene {"file.wav": ["label"]}; event {"file.wav": [{"label": "dog", "start": 120.0, "end": 870.5}, ...]}
with times in milliseconds. Every problem found is reported at once, one line each naming its file, as a
`HearTaskError` (the CSV layout's `LabelsError` for this layout): a missing task_metadata.json or key, a label file
naming audio that is not there (at any of the sample rates), a label outside the vocabulary, an empty split,
audio libsndfile cannot read.

Splits for the probes (`HearTask.folds`): train/valid/test: train + valid -> test; folds: each fold is held out in
turn, the probe trained on the others, and the test figures pool every clip's held-out prediction.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile

METADATA = "task_metadata.json"
TRAIN_VALID_TEST, FOLDS = "train/valid/test", "folds"
SCENE, EVENT = "scene", "event"
MULTICLASS, MULTILABEL = "multiclass", "multilabel"
MAX_PROBLEMS = 50  # lines in one error; the rest are counted


class HearTaskError(ValueError):
    """The task folder is not usable (mirrors user_data.LabelsError); `problems` holds one line per problem, each
    naming its file."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_PROBLEMS] + ([f"... and {len(problems) - MAX_PROBLEMS} more"]
                                           if len(problems) > MAX_PROBLEMS else [])
        super().__init__("the HEAR task folder is not usable:\n" + "\n".join(f"- {p}" for p in shown))


@dataclass(frozen=True)
class Event:
    label: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class TaskClip:
    file: str  # as named in its label file: the path under <rate>/<split>/
    split: str
    labels: tuple[str, ...]  # scene: its label; event: the labels of its events
    events: tuple[Event, ...] = ()  # event tasks only


@dataclass(frozen=True)
class HearTask:
    root: Path
    name: str
    mode: str  # TRAIN_VALID_TEST or FOLDS
    embedding_type: str  # SCENE or EVENT
    splits: tuple[str, ...]
    vocabulary: tuple[str, ...]
    sample_rates: tuple[int, ...]  # ascending
    clips: tuple[TaskClip, ...]
    prediction_type: str = MULTICLASS  # scene tasks: MULTICLASS or MULTILABEL

    def audio_path(self, clip: TaskClip, rate: int) -> Path:
        return self.root / str(rate) / clip.split / clip.file

    def rate_for(self, model_rate: int) -> int:
        """The shipped rate equal to the model's, else the nearest (the higher on a tie: no band lost),
        with a warning that the audio gets resampled."""
        if model_rate in self.sample_rates:
            return model_rate
        rate = min(self.sample_rates, key=lambda r: (abs(r - model_rate), r < model_rate))
        warnings.warn(f"{self.root}: no {model_rate} Hz audio folder; resampling the {rate} Hz one to {model_rate} Hz",
                      stacklevel=2)
        return rate

    def indices(self, split: str) -> list[int]:
        return [i for i, c in enumerate(self.clips) if c.split == split]

    def folds(self) -> list[tuple[list[int], list[int]]]:
        """(train, test) clip indices per evaluation: train + valid -> test, or each fold held out in turn."""
        if self.mode == FOLDS:
            return [([i for i, c in enumerate(self.clips) if c.split != held], self.indices(held))
                    for held in self.splits]
        train = [i for i, c in enumerate(self.clips) if c.split != "test"]
        return [(train, self.indices("test"))]


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        problems.append(f"{path}: missing")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path}: not readable JSON ({error})")
    return None


def _mode(metadata: dict[str, Any], path: Path, problems: list[str]) -> str | None:
    mode = metadata.get("mode", metadata.get("split_mode"))
    if mode is None:
        problems.append(f"{path}: missing key 'mode' ({TRAIN_VALID_TEST!r} or {FOLDS!r})")
    elif mode in (TRAIN_VALID_TEST, "trainvaltest"):
        return TRAIN_VALID_TEST
    elif mode == FOLDS or str(mode).endswith("folds") or str(mode).endswith("kfold"):
        return FOLDS
    else:
        problems.append(f"{path}: 'mode' must be {TRAIN_VALID_TEST!r} or {FOLDS!r}, got {mode!r}")
    return None


def _splits(root: Path, metadata: dict[str, Any], mode: str, path: Path, problems: list[str]) -> list[str]:
    if "split_names" in metadata:
        names = metadata["split_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append(f"{path}: 'split_names' must be a list of names, got {names!r}")
            return []
        if mode == TRAIN_VALID_TEST and not {"train", "test"} <= set(names):
            problems.append(f"{path}: mode {TRAIN_VALID_TEST!r} needs the splits 'train' and 'test', got {names}")
        return names
    if mode == FOLDS:
        folds = metadata.get("nfolds")
        if not isinstance(folds, int) or folds < 2:
            problems.append(f"{path}: mode 'folds' needs 'nfolds' (at least 2) or 'split_names', got {folds!r}")
            return []
        return [f"fold{k:02d}" for k in range(folds)]
    return ["train", *(["valid"] if (root / "valid.json").is_file() else []), "test"]


def _sample_rates(root: Path, metadata: dict[str, Any], path: Path, problems: list[str]) -> list[int]:
    given = metadata.get("sample_rates", metadata.get("sample_rate"))
    if given is None:
        rates = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
        if not rates:
            problems.append(f"{root}: no audio folder (<sample rate>/<split>/, e.g. 32000/train/)")
        return rates
    rates = given if isinstance(given, list) else [given]
    if not all(isinstance(r, int) and r > 0 for r in rates):
        problems.append(f"{path}: 'sample_rate(s)' must be positive integers, got {given!r}")
        return []
    for rate in rates:
        if not (root / str(rate)).is_dir():
            problems.append(f"{root / str(rate)}: missing (task_metadata.json lists {rate} Hz)")
    return sorted(r for r in rates if (root / str(r)).is_dir())


def _vocabulary(root: Path, metadata: dict[str, Any], path: Path, problems: list[str]) -> list[str] | None:
    if "label_vocabulary" in metadata:
        vocabulary = metadata["label_vocabulary"]
        if not isinstance(vocabulary, list) or not all(isinstance(v, str) for v in vocabulary):
            problems.append(f"{path}: 'label_vocabulary' must be a list of labels, got {vocabulary!r}")
            return None
        return vocabulary
    listed = root / "labelvocabulary.csv"  # hear-preprocess's file: idx,label
    if listed.is_file():
        with listed.open(newline="") as handle:
            return [row["label"] for row in csv.DictReader(handle) if row.get("label")]
    return None


def _scene_labels(value: Any, where: str, problems: list[str], prediction: str) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: a scene label must be a list of label strings, got {value!r}")
        return None
    if prediction == MULTICLASS and len(value) != 1:
        problems.append(f"{where}: multiclass scene tasks need exactly one label per file, got {value!r}")
        return None
    if prediction == MULTILABEL and (not value or len(set(value)) != len(value)):
        problems.append(f"{where}: multilabel scene tasks need one or more distinct labels per file, got {value!r}")
        return None
    return tuple(sorted(value))


def _events(value: Any, where: str, problems: list[str]) -> tuple[Event, ...] | None:
    if not isinstance(value, list):
        problems.append(f"{where}: event labels must be a list of {{label, start, end}}, got {value!r}")
        return None
    events = []
    for event in value:
        if (not isinstance(event, dict) or not isinstance(event.get("label"), str)
                or not all(isinstance(event.get(k), int | float) for k in ("start", "end"))):
            problems.append(f"{where}: an event needs 'label' (string), 'start' and 'end' (ms), got {event!r}")
            return None
        if not 0 <= event["start"] <= event["end"]:
            problems.append(f"{where}: an event needs 0 <= start <= end, got {event!r}")
            return None
        events.append(Event(event["label"], float(event["start"]), float(event["end"])))
    return tuple(sorted(events, key=lambda e: (e.start_ms, e.label)))


def _check_audio(root: Path, rates: list[int], split: str, file: str, label_file: Path, problems: list[str]) -> None:
    for rate in rates:
        audio = root / str(rate) / split / file
        if not audio.is_file():
            problems.append(f"{label_file}: names {file!r}, but there is no {audio}")
            continue
        try:
            info = soundfile.info(str(audio))
        except (RuntimeError, soundfile.LibsndfileError) as error:
            problems.append(f"{audio}: unreadable audio ({error})")
            continue
        if info.frames == 0:
            problems.append(f"{audio}: holds no samples")


def read_task(root: Path) -> HearTask:
    """The task, validated as a whole: every problem found raises together (HearTaskError)."""
    problems: list[str] = []
    path = root / METADATA
    if not root.is_dir():
        raise HearTaskError([f"{root}: not a folder"])
    metadata = _read_json(path, problems)
    if metadata is None:
        raise HearTaskError(problems)
    if not isinstance(metadata, dict):
        raise HearTaskError([f"{path}: must hold a JSON object, got {type(metadata).__name__}"])
    for key in ("task_name", "embedding_type"):
        if key not in metadata:
            problems.append(f"{path}: missing key {key!r}")
    mode = _mode(metadata, path, problems)
    kind = metadata.get("embedding_type")
    if kind is not None and kind not in (SCENE, EVENT):
        problems.append(f"{path}: 'embedding_type' must be {SCENE!r} or {EVENT!r}, got {kind!r}")
    prediction = metadata.get("prediction_type", MULTICLASS)
    if kind == SCENE and prediction not in (MULTICLASS, MULTILABEL):
        problems.append(f"{path}: scene tasks must be {MULTICLASS!r} (one label per file) or {MULTILABEL!r} (one or "
                        f"more); prediction_type {prediction!r} is not supported")
    splits = _splits(root, metadata, mode, path, problems) if mode is not None else []
    rates = _sample_rates(root, metadata, path, problems)
    vocabulary = _vocabulary(root, metadata, path, problems)
    if problems:  # the label files cannot be read against a broken task description
        raise HearTaskError(problems)
    clips: list[TaskClip] = []
    for split in splits:
        label_file = root / f"{split}.json"
        entries = _read_json(label_file, problems)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            problems.append(f"{label_file}: must map file names to labels, got {type(entries).__name__}")
            continue
        if not entries:
            problems.append(f"{label_file}: the split {split!r} is empty")
        for file, value in sorted(entries.items()):
            where = f"{label_file}: {file!r}"
            labels: tuple[str, ...] | None
            events: tuple[Event, ...] | None
            if kind == SCENE:
                labels, events = _scene_labels(value, where, problems, prediction), ()
            else:
                events = _events(value, where, problems)
                labels = None if events is None else tuple(sorted({e.label for e in events}))
            if labels is None or events is None:
                continue
            outside = sorted(set(labels) - set(vocabulary)) if vocabulary is not None else []
            if outside:
                problems.append(f"{where}: label(s) {outside} not in the label vocabulary")
            _check_audio(root, rates, split, file, label_file, problems)
            clips.append(TaskClip(file, split, labels, events))
    found = sorted({label for clip in clips for label in clip.labels})
    if not problems and len(found) < 2:
        problems.append(f"{path}: a probe needs at least two labels, the label files hold {found}")
    if problems:
        raise HearTaskError(problems)
    return HearTask(root, str(metadata["task_name"]), mode or "", str(kind), tuple(splits),
                    tuple(vocabulary if vocabulary is not None else found), tuple(rates), tuple(clips),
                    prediction if kind == SCENE else MULTICLASS)
