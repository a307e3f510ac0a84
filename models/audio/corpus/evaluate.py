"""A first HEAR-style evaluation on the corpus's held-out sources (issue 25 step 3, started): for each task
of the manifest, a linear probe on frozen scene embeddings of the exported embedders (PaSST, bag of
words) next to log-mel statistics (per mel bin mean and std, nothing learned), trained on the task's
train clips and scored on its test clips (other voices, words, instruments or packages), with a bootstrap
95% interval over test clips and a shuffled-label control. The probe, the features and the audio loading
are models/audio/user_data.py's; each clip is embedded once and shared by the tasks that use it.

    python -m models.audio.corpus evaluate --corpus artifacts/audio-corpus --repository shipped_models

Not yet (issue 25 step 3): the hear-eval-kit MLP with its validation grid search, the untrained PaSST
and public HEAR baselines, the timestamp (onset) task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hear_infersuite import api as hear
from models.audio.corpus.builder import MANIFEST
from models.audio.frontend import FrontEndConfig, LogMelStatistics
from models.audio.metrics import linear_probe_predictions
from models.audio.user_data import BASELINE, EMBEDDERS, Clip, load_audio, probe, read_labels

BATCH = 64  # one-second clips embedded together
VALIDATION_SHARE = 0.3  # of a task's train groups, held out to validate choices made before the test
VALIDATION_SEED = 0  # one validation split for every model compared on it


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
    """Accuracy of the probe on features `a` minus that on `b`, with a paired bootstrap 95% interval (the
    same resampled test clips for both)."""
    right = [(linear_probe_predictions(f[train], labels[train], f[test]) == labels[test]).astype(np.float64)
             for f in (a, b)]
    difference = right[0] - right[1]
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (resamples, len(difference)))].mean(axis=1)
    return {"difference": round(float(difference.mean()), 4),
            "interval_95": [round(float(np.quantile(means, q)), 4) for q in (0.025, 0.975)]}


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


def evaluate(corpus: Path, repository: Path, seed: int = 0, tasks: list[str] | None = None,
             extra: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
             reference: str | None = None, validation: bool = False) -> dict[str, Any]:
    """Every task's probe per embedder: the repository's, log-mel statistics and `extra` (title -> clips
    (N, samples) -> scene embeddings). With `reference`, each task also gets that embedder's paired
    differences against every other one. With `validation`, each probe fits and scores inside the task's
    train clips (`validation_split`); the test clips are not read."""
    manifest = json.loads((corpus / MANIFEST).read_text())
    chosen = {name: task for name, task in manifest["tasks"].items() if tasks is None or name in tasks}
    task_clips = {name: read_labels(corpus, corpus / task["labels_csv"]) for name, task in chosen.items()}
    if validation:  # only the train clips are read
        task_clips = {name: [c for c in clips if c.split == "train"] for name, clips in task_clips.items()}
    rate = FrontEndConfig().sample_rate
    audio = {str(c.path): load_audio(c.path, rate) for clips in task_clips.values() for c in clips}
    features = feature_sets(audio, repository)
    for title, embed in (extra or {}).items():
        features[title] = embed_all(audio, embed)
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
            "embedders": {title: probe(m, y, train, test, seed) for title, m in matrix.items()}}
        if reference is not None:
            results[name]["differences"] = {
                f"{reference} - {other}": paired_difference(matrix[reference], matrix[other], y, train, test, seed)
                for other in matrix if other != reference}
    return {"corpus": str(corpus), "repository": str(repository), "seed": seed, "tasks": results}


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
    return "\n".join(lines) + "\n"
