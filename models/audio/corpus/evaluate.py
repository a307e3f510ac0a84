"""HEAR-style evaluation on the corpus's held-out sources (issue 25 step 3): for each task of the manifest, two
probes on frozen scene embeddings of the exported embedders (PaSST, bag of words) next to log-mel statistics (per
mel bin mean and std, nothing learned), trained on the task's train clips and scored on its test clips (other
voices, words, instruments or packages):

- linear: a logistic regression on standardised embeddings (models/audio/user_data.py's probe), with a
  shuffled-label control;
- MLP: hear-eval-kit's downstream predictor (`models.audio.metrics.mlp_probe_predictions`: one hidden layer,
  dropout, Adam, early stopping, a learning rate x width x dropout grid) chosen on a validation split carved from
  the task's train clips (`mlp_validation_split`: whole groups where the labels allow, else clips), refit on all
  train clips, scored on the test clips.

Each gets a bootstrap 95% interval over test clips; each clip is embedded once and shared by the tasks that use
it. Per task, the test clips' ids are recorded once (`test_clips`, in scoring order) and, per probe and embedder,
which of them the probe got right (`correct`: a string of 0/1, one character per test clip), so runs of
differently seeded embedders can be paired clip by clip (models/audio/pretrain_seeds.py).

The timestamp task (models/audio/corpus/onsets.py: event onsets in noise, HEAR's event format) is scored by the
user path's frame-level probe (`models.audio.user_data.evaluate_events`: onset F-measure within +-200 ms, a
bootstrap interval over test mixtures, PaSST's paired differences from the other embedders).

    python -m models.audio.corpus evaluate --corpus artifacts/audio-corpus --repository shipped_models"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hear_infersuite import api as hear
from models.audio.corpus import onsets
from models.audio.corpus.builder import MANIFEST
from models.audio.frontend import FrontEndConfig, LogMelStatistics
from models.audio.metrics import linear_probe_predictions, mlp_probe_predictions
from models.audio.user_data import (
    BASELINE,
    EMBEDDERS,
    HEAR_BASELINE,
    Clip,
    evaluate_events,
    event_table,
    f_from_counts,
    hear_baseline_note,
    hear_module_features,
    load_audio,
    prepare_task,
    probe,
    read_labels,
)

BATCH = 64  # one-second clips embedded together
VALIDATION_SHARE = 0.3  # of a task's train groups, held out to validate choices made before the test
VALIDATION_SEED = 0  # one validation split for every model compared on it
PROBE_SEED = 0  # the MLP probe's init and batch order: the same for every embedder and every run compared
PROBES = ("linear", "mlp")


def embed_all(audio: dict[str, np.ndarray], embed: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """file -> feature vector; clips of equal length go through `embed` in batches of BATCH."""
    by_length: dict[int, list[str]] = {}
    for file, samples in audio.items():
        by_length.setdefault(samples.size, []).append(file)
    features: dict[str, np.ndarray] = {}
    for files in by_length.values():
        for start in range(0, len(files), BATCH):
            chunk = files[start:start + BATCH]
            vectors = embed(np.stack([audio[f] for f in chunk]))  # (n, samples) -> (n, dim)
            features.update(zip(chunk, vectors, strict=True))
    return features


def _scene_embedder(model: hear.HearModel) -> Callable[[np.ndarray], np.ndarray]:
    return lambda batch: hear.get_scene_embeddings(torch.from_numpy(batch), model).numpy()


def feature_sets(audio: dict[str, np.ndarray], repository: Path) -> dict[str, dict[str, np.ndarray]]:
    statistics, rate = LogMelStatistics(FrontEndConfig()).eval(), FrontEndConfig().sample_rate
    sets = {}
    with torch.no_grad():
        sets[BASELINE] = embed_all(audio, lambda batch: statistics(torch.from_numpy(batch)).numpy())
    for title, model_name in EMBEDDERS.items():
        model = hear.load_model(str(repository / model_name), threads=0)
        if model.sample_rate != rate:
            raise ValueError(f"{model_name} runs at {model.sample_rate} Hz, the corpus's clips at {rate} Hz")
        sets[title] = embed_all(audio, _scene_embedder(model))
    return sets


def paired_difference(a: np.ndarray, b: np.ndarray, labels: np.ndarray, train: list[int], test: list[int],
                      seed: int, resamples: int = 2000) -> dict[str, Any]:
    """Accuracy of the linear probe on features `a` minus that on `b`, with a paired bootstrap 95% interval (the
    same resampled test clips for both)."""
    right = [(linear_probe_predictions(f[train], labels[train], f[test]) == labels[test]) for f in (a, b)]
    return paired_bootstrap(right[0], right[1], seed, resamples)


def paired_bootstrap(right_a: np.ndarray, right_b: np.ndarray, seed: int, resamples: int = 2000) -> dict[str, Any]:
    """Mean of `right_a` minus `right_b` (per test clip, 1 = right) and its paired bootstrap 95% interval."""
    difference = np.asarray(right_a, np.float64) - np.asarray(right_b, np.float64)
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (resamples, len(difference)))].mean(axis=1)
    return {"difference": round(float(difference.mean()), 4),
            "interval_95": [round(float(np.quantile(means, q)), 4) for q in (0.025, 0.975)]}


def accuracy_interval(right: np.ndarray, seed: int, resamples: int = 2000) -> dict[str, Any]:
    """Accuracy over test clips (1 = right) and its bootstrap 95% interval (user_data's probe draws alike)."""
    rng = np.random.default_rng(seed)
    means = right[rng.integers(0, len(right), (resamples, len(right)))].mean(axis=1)
    return {"accuracy": round(float(right.mean()), 4),
            "interval_95": [round(float(np.quantile(means, q)), 4) for q in (0.025, 0.975)]}


def encode_correct(right: np.ndarray) -> str:
    """Per-clip correctness as one character per clip ("1" right, "0" wrong): compact in quality.json."""
    return "".join("1" if value else "0" for value in np.asarray(right, bool))


def decode_correct(text: str) -> np.ndarray:
    """`encode_correct`'s inverse: (clips,) float64 of 0 and 1."""
    if set(text) - {"0", "1"}:
        raise ValueError(f"per-clip correctness must be a string of 0 and 1, got {text[:20]!r}...")
    return np.frombuffer(text.encode(), np.uint8).astype(np.float64) - ord("0")


def validation_split(clips: list[Clip], seed: int, share: float = VALIDATION_SHARE) -> tuple[list[int], list[int]]:
    """(fit, validation) indices within a task's train clips only: a seeded `share` of their groups (voices,
    words, programs, packages) validates, so a choice made on it never sees a test clip. A group is held out
    only while every label keeps a group to fit on: a label seen only in validation would score 0 for every
    embedder (instrument family has one train program per family, so it gets no validation clips)."""
    train = [i for i, c in enumerate(clips) if c.split == "train"]
    groups = sorted({clips[i].group for i in train})
    labels_of = {g: {clips[i].label for i in train if clips[i].group == g} for g in groups}
    wanted, held = max(1, round(share * len(groups))), set()
    for group in np.random.default_rng(seed).permutation(groups).tolist():  # split_clips's draw
        kept = set().union(*(labels_of[g] for g in groups if g not in held and g != group))
        if kept == set().union(*labels_of.values()):
            held.add(group)
        if len(held) == wanted:
            break
    return ([i for i in train if clips[i].group not in held], [i for i in train if clips[i].group in held])


def mlp_validation_split(clips: list[Clip], train: list[int], seed: int = VALIDATION_SEED,
                         share: float = VALIDATION_SHARE) -> tuple[list[int], list[int], str]:
    """(fit, validation, "groups" or "clips"): the MLP probe's early stopping and grid choice split of the clips
    at `train`. Whole groups (`validation_split`) where the labels allow; where no group can be held out (a task
    with one train group per label, or one group in all), a seeded `share` of each label's clips, keeping at least
    one to fit on. Only `train` clips are read."""
    own = [replace(clips[i], split="train") for i in train]
    fit, validation = validation_split(own, seed, share)
    if validation:
        return [train[i] for i in fit], [train[i] for i in validation], "groups"
    rng, held = np.random.default_rng(seed), set()
    for label in sorted({c.label for c in own}):
        members = [i for i, c in enumerate(own) if c.label == label]
        count = min(len(members) - 1, round(share * len(members)))
        held.update(rng.permutation(members)[:count].tolist())
    return ([train[i] for i in range(len(own)) if i not in held], [train[i] for i in range(len(own)) if i in held],
            "clips")


def _linear_right(features: np.ndarray, y: np.ndarray, train: list[int], test: list[int]) -> np.ndarray:
    return linear_probe_predictions(features[train], y[train], features[test]) == y[test]


def _mlp_right(features: np.ndarray, y: np.ndarray, split: tuple[list[int], list[int]], test: list[int],
               classes: int) -> tuple[np.ndarray, dict[str, Any]]:
    fit, held = split
    predicted, chosen = mlp_probe_predictions(features[fit], y[fit], features[held], y[held], features[test],
                                              classes, PROBE_SEED)
    return predicted == y[test], chosen


def probe_task(matrix: dict[str, np.ndarray], y: np.ndarray, clips: list[Clip], train: list[int], test: list[int],
               seed: int, reference: str | None = None, probes: tuple[str, ...] = PROBES,
               mlp_titles: Collection[str] | None = None) -> dict[str, Any]:
    """One task's probes per embedder (title -> (clips, dim) features): the linear probe's figures as before
    (`embedders`, `differences`), the MLP's under `mlp` (for `mlp_titles` only, None: all), and per probe and
    embedder which test clips it got right (`correct`, in `test` order). `reference`: that embedder's paired
    differences against every other one the probe scored."""
    result: dict[str, Any] = {"embedders": {t: probe(m, y, train, test, seed) for t, m in matrix.items()}}
    right = {"linear": {t: _linear_right(m, y, train, test) for t, m in matrix.items()}}
    if "mlp" in probes:
        fit, held, how = mlp_validation_split(clips, train)
        scored = {t: _mlp_right(m, y, (fit, held), test, int(y.max()) + 1) for t, m in matrix.items()
                  if mlp_titles is None or t in mlp_titles}
        right["mlp"] = {t: r for t, (r, _) in scored.items()}
        result["mlp"] = {"validation": {"fit": len(fit), "validation": len(held), "held_out": how},
                         "embedders": {t: {**accuracy_interval(r.astype(np.float64), seed), **chosen}
                                       for t, (r, chosen) in scored.items()}}
    if reference is not None:
        for probe_name, by_title in right.items():
            if reference not in by_title:
                continue
            differences = {f"{reference} - {other}": paired_bootstrap(by_title[reference], by_title[other], seed)
                           for other in by_title if other != reference}
            (result if probe_name == "linear" else result[probe_name])["differences"] = differences
    result["correct"] = {p: {t: encode_correct(r) for t, r in by_title.items()} for p, by_title in right.items()}
    return result


def clip_id(clip: Clip, corpus: Path) -> str:
    """A clip's file relative to the corpus (what pairs it across runs), else its path as read."""
    return clip.path.relative_to(corpus).as_posix() if clip.path.is_relative_to(corpus) else str(clip.path)


def evaluate(corpus: Path, repository: Path, seed: int = 0, tasks: list[str] | None = None,
             extra: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
             reference: str | None = None, validation: bool = False,
             probes: tuple[str, ...] = PROBES, mlp_titles: Collection[str] | None = None,
             hear_modules: dict[str, tuple[str, str]] | None = None, event_tasks: bool = False) -> dict[str, Any]:
    """Every task's `probes` per embedder (`probe_task`; the MLP for `mlp_titles` only, None: all): the
    repository's, log-mel statistics, `extra` (title -> clips (N, samples) -> scene embeddings) and
    `hear_modules` (title -> (interpreter, HEAR API module), run out of process on the clips' files). With
    `reference`, each task also gets that embedder's paired differences against every other one. With
    `validation`, each probe fits and scores inside the task's train clips (`validation_split`); the test clips
    are not read. With `event_tasks` (never with `validation`), the manifest's timestamp tasks too, in
    result["event_tasks"], scored by `evaluate_events` with the repository's embedders and `hear_modules`."""
    manifest = json.loads((corpus / MANIFEST).read_text())
    chosen = {name: task for name, task in manifest["tasks"].items() if tasks is None or name in tasks}
    timed = {} if validation or not event_tasks else {
        name: task for name, task in manifest.get("event_tasks", {}).items() if tasks is None or name in tasks}
    task_clips = {name: read_labels(corpus, corpus / task["labels_csv"]) for name, task in chosen.items()}
    if validation:  # only the train clips are read
        task_clips = {name: [c for c in clips if c.split == "train"] for name, clips in task_clips.items()}
    rate = FrontEndConfig().sample_rate
    audio = {str(c.path): load_audio(c.path, rate) for clips in task_clips.values() for c in clips}
    features = feature_sets(audio, repository)
    for title, embed in (extra or {}).items():
        features[title] = embed_all(audio, embed)
    for title, (python, module) in (hear_modules or {}).items():
        with tempfile.TemporaryDirectory() as work:
            features[title] = hear_module_features(sorted(audio), python, module, Path(work))
    results: dict[str, Any] = {}
    for name, clips in task_clips.items():
        labels = sorted({c.label for c in clips})
        y = np.array([labels.index(c.label) for c in clips])
        if validation:
            train, test = validation_split(clips, VALIDATION_SEED)
            if not test or len({y[i] for i in train}) < 2:  # one group (event kinds: one theme) cannot validate
                continue
        else:
            train = [i for i, c in enumerate(clips) if c.split == "train"]
            test = [i for i, c in enumerate(clips) if c.split == "test"]
        matrix = {title: np.stack([vectors[str(c.path)] for c in clips]) for title, vectors in features.items()}
        results[name] = {
            "description": chosen[name]["description"], "classes": len(labels), "train": len(train),
            "test": len(test), "chance": round(1 / len(labels), 4),
            **probe_task(matrix, y, clips, train, test, seed, reference, probes, mlp_titles),
            "test_clips": [clip_id(clips[i], corpus) for i in test]}
    timed_results = {name: _timed_task(corpus / task["folder"], repository, seed, hear_modules)
                     | {"description": task["description"]} for name, task in timed.items()}
    return {"corpus": str(corpus), "repository": str(repository), "seed": seed, "probes": list(probes),
            "mlp_probe_seed": PROBE_SEED, "tasks": results, **({"event_tasks": timed_results} if timed else {})}


def f_by_ratio(per_clip_counts: list[list[int]], files: list[str], ratios: dict[str, float]) -> dict[str, float]:
    """Onset F-measure over the test mixtures of each event-to-background ratio ('-6', '+0', '+6' dB), from an
    event probe's (hits, reference onsets, estimated onsets) per test clip, `files` in the same order."""
    by_ratio: dict[str, list[list[int]]] = {}
    for counts, file in zip(per_clip_counts, files, strict=True):
        by_ratio.setdefault(f"{ratios[file]:+g}", []).append(counts)
    return {key: round(f_from_counts(np.array(rows)), 4)
            for key, rows in sorted(by_ratio.items(), key=lambda item: float(item[0]))}


def _timed_task(folder: Path, repository: Path, seed: int,
                hear_modules: dict[str, tuple[str, str]] | None) -> dict[str, Any]:
    """`evaluate_events` on a timestamp task folder; with its mixtures' ratios (onsets.RATIOS), each embedder's
    F-measure per event-to-background ratio too (`f_by_ratio`)."""
    prepared = prepare_task(folder)
    result, _ = evaluate_events(prepared, repository, seed, hear_modules)
    if (folder / onsets.RATIOS).is_file() and prepared.task is not None and len(prepared.folds) == 1:
        ratios = json.loads((folder / onsets.RATIOS).read_text())
        files = [prepared.task.clips[i].file for i in prepared.folds[0][1]]
        result["f_by_ratio_db"] = {title: f_by_ratio(r["per_clip_counts"], files, ratios)
                                   for title, r in result["embedders"].items()}
    return result


def render(result: dict[str, Any], command: str, seconds: float) -> str:
    lines = [
        "# Audio embeddings on the corpus's held-out sources (issue 25)", "",
        f"Produced by `{command}` ({seconds:.0f} s wall). Linear probe (standardised logistic regression) on "
        "frozen scene embeddings, trained on each task's train clips, scored on its test clips, whose voices, "
        "words, instruments or package neither the embedders' training nor the probe saw; interval: bootstrap "
        "95% over test clips; control: the probe trained on shuffled labels.", "",
        "| task | classes | train / test clips | embedder | accuracy | 95% interval | shuffled control |",
        "|---|---|---|---|---|---|---|"]
    for name, task in result["tasks"].items():
        for title, r in task["embedders"].items():
            lines.append(f"| {name} | {task['classes']} | {task['train']} / {task['test']} | {title} | "
                         f"{r['accuracy']:.3f} | {r['interval_95'][0]:.3f}-{r['interval_95'][1]:.3f} | "
                         f"{r['shuffled_label_control']:.3f} |")
    if any(HEAR_BASELINE in task["embedders"] for task in result["tasks"].values()):
        lines += ["", hear_baseline_note("the corpus's 32 kHz clips")]
    if any("mlp" in task for task in result["tasks"].values()):
        lines += ["", *render_mlp(result)]
    for name, task in result.get("event_tasks", {}).items():
        lines += ["", f"## Timestamp task: {name}", "",
                  f"{task['description']}: {task['train']} train and {task['test']} test mixtures of 10 s "
                  f"({task['test_onsets']} test onsets; the manifest says how they are built).", "",
                  *event_table(task, "the mixtures' 32 kHz audio")]
        if "f_by_ratio_db" in task:
            keys = list(next(iter(task["f_by_ratio_db"].values())))
            lines += ["", "Onset F-measure per event-to-background ratio (the test mixtures of each ratio pooled):", "",
                      "| embedder | " + " | ".join(f"{k} dB" for k in keys) + " |", "|---|" + "---|" * len(keys)]
            lines += [f"| {title} | " + " | ".join(f"{f[k]:.3f}" for k in keys) + " |"
                      for title, f in task["f_by_ratio_db"].items()]
    return "\n".join(lines) + "\n"


def render_mlp(result: dict[str, Any]) -> list[str]:
    """The MLP probe's table: accuracy, interval, and the grid point and epochs validation chose."""
    lines = [
        "MLP probe (hear-eval-kit's protocol, `models.audio.metrics.mlp_probe_predictions`): the grid point with "
        "the best validation accuracy, trained on the fit part of each task's train clips with early stopping on "
        "the validation part (whole groups held out, or clips where no group can be), then refit on all train "
        "clips for the chosen epochs and scored on the test clips; interval: bootstrap 95% over test clips.", "",
        "| task | fit / validation clips (held out) | embedder | accuracy | 95% interval | chosen: lr, hidden, "
        "dropout, epochs | validation accuracy |", "|---|---|---|---|---|---|---|"]
    for name, task in result["tasks"].items():
        if "mlp" not in task:
            continue
        split = task["mlp"]["validation"]
        for title, r in task["mlp"]["embedders"].items():
            c = r["chosen"]
            lines.append(f"| {name} | {split['fit']} / {split['validation']} ({split['held_out']}) | {title} | "
                         f"{r['accuracy']:.3f} | {r['interval_95'][0]:.3f}-{r['interval_95'][1]:.3f} | "
                         f"{c['learning_rate']:g}, {c['hidden']}, {c['dropout']:g}, {c['epochs']} | "
                         f"{c['validation_accuracy']:.3f} |")
    return lines
