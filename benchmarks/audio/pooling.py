"""`python -m benchmarks.audio.pooling` (`make report-audio-pooling`): statistics pooling against mean pooling
for the corpus-pretrained PaSST (issue 25: voice from an unseen word still lost to log-mel statistics).

Statistics pooling (`PasstConfig.pooling="stats"`) adds the patch tokens' standard deviation to the scene
embedding, as x-vectors pool mean and std over frames (Snyder et al., ICASSP 2018); the multi-task heads
are trained on that embedding, so it is a pretraining of its own (`make pretrain-audio-stats`). Compared here
with the mean-pooled checkpoints of the same seeds (`artifacts/audio-pretrain/seed<s>-e40`, the shipped one
is seed 0), every model embedding the same clips once:

- **validation** (the choice): each task's train clips only, split by group (`corpus.evaluate.validation_split`,
  30% of the voices / words / programs validate); the probe fits on the rest. No test clip is read.
- **test** (reported, not chosen on): the task's train / test split, as `make report-audio-corpus`.

Per task, the paired difference stats - mean of per-clip probe correctness, with the project's hierarchical
bootstrap over pretraining seeds and clips (`models.statistics`, its `RULE`). Decision rule, fixed before
the runs: re-ship statistics pooling only if on validation the voice task is *supported* and no task is
*contradicted* on validation or test; otherwise the shipped mean-pooled model stays.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio.corpus import evaluate as corpus_eval
from models.audio.corpus.builder import MANIFEST
from models.audio.frontend import FrontEndConfig, LogMelStatistics
from models.audio.metrics import linear_probe_predictions
from models.audio.pretrain import load, torch_scene_embedder
from models.audio.user_data import BASELINE, load_audio, read_labels
from models.statistics import RULE, hierarchical_bootstrap

VOICE = "voice_unseen_word"
CHECKPOINTS = {"mean": "artifacts/audio-pretrain/seed{seed}-e40/pretrain.pt",
               "stats": "artifacts/audio-pretrain/stats-seed{seed}-e40/pretrain.pt"}


def correct(features: np.ndarray, labels: np.ndarray, train: list[int], test: list[int]) -> np.ndarray:
    """(len(test),) 1.0 where the linear probe fitted on `train` is right."""
    return (linear_probe_predictions(features[train], labels[train], features[test]) == labels[test]).astype(float)


def embed_clips(corpus: Path, seeds: list[int]) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(task -> clips, title -> file -> scene embedding): log-mel statistics and every checkpoint."""
    tasks = json.loads((corpus / MANIFEST).read_text())["tasks"]
    clips = {name: read_labels(corpus, corpus / task["labels_csv"]) for name, task in tasks.items()}
    rate = FrontEndConfig().sample_rate
    audio = {str(c.path): load_audio(c.path, rate) for task_clips in clips.values() for c in task_clips}
    statistics = LogMelStatistics(FrontEndConfig()).eval()
    with torch.no_grad():
        features = {BASELINE: corpus_eval.embed_all(audio, lambda b: statistics(torch.from_numpy(b)).numpy())}
    for pooling, pattern in CHECKPOINTS.items():
        for seed in seeds:
            model, _ = load(Path(pattern.format(seed=seed)))
            if model.config.pooling != pooling:
                raise SystemExit(f"{pattern.format(seed=seed)} pools {model.config.pooling!r}, not {pooling!r}")
            features[f"{pooling}/{seed}"] = corpus_eval.embed_all(audio, torch_scene_embedder(model))
    return clips, features


def _split(task_clips: list[Any], validation: bool) -> tuple[list[int], list[int]]:
    if validation:
        return corpus_eval.validation_split(task_clips, corpus_eval.VALIDATION_SEED)
    return ([i for i, c in enumerate(task_clips) if c.split == "train"],
            [i for i, c in enumerate(task_clips) if c.split == "test"])


def compare_task(task_clips: list[Any], features: dict[str, dict[str, np.ndarray]], seeds: list[int],
                 validation: bool) -> dict[str, Any] | None:
    """Accuracies per seed and the paired stats - mean (and stats - log-mel) intervals; None when the split
    cannot score (one group: nothing to validate on)."""
    names = sorted({c.label for c in task_clips})
    y = np.array([names.index(c.label) for c in task_clips])
    train, test = _split(task_clips, validation)
    if not test or len(set(y[train].tolist())) < 2:
        return None
    right = {title: correct(np.stack([vectors[str(c.path)] for c in task_clips]), y, train, test)
             for title, vectors in features.items()}
    stats, mean = (np.stack([right[f"{p}/{s}"] for s in seeds]) for p in ("stats", "mean"))  # (seeds, clips)
    return {"classes": len(names), "fit": len(train), "scored": len(test),
            "accuracy": {title: round(float(r.mean()), 4) for title, r in right.items()},
            "stats - mean": _interval(stats - mean), "stats - log-mel": _interval(stats - right[BASELINE]),
            "mean - log-mel": _interval(mean - right[BASELINE])}


def _interval(differences: np.ndarray) -> dict[str, Any]:
    found = hierarchical_bootstrap(differences)
    return {"estimate": round(found.estimate, 4), "interval_95": [round(found.low, 4), round(found.high, 4)],
            "verdict": found.verdict}


def decide(result: dict[str, Any]) -> tuple[bool, str]:
    """The module docstring's rule on {"validation": tasks, "test": tasks}."""
    voice = result["validation"].get(VOICE)
    if voice is None or voice["stats - mean"]["verdict"] != "supported":
        return False, f"voice on validation is not supported ({voice and voice['stats - mean']['verdict']})"
    lost = [f"{split}/{task}" for split, tasks in result.items() for task, r in tasks.items()
            if r["stats - mean"]["verdict"] == "contradicted"]
    if lost:
        return False, f"contradicted on {', '.join(lost)}"
    return True, "voice supported on validation and no task contradicted"


def render(result: dict[str, Any], seeds: list[int], command: str, seconds: float) -> str:
    ship, reason = decide(result)
    lines = ["# Statistics pooling vs mean pooling, corpus-pretrained PaSST (issue 25)", "",
             f"Produced by `{command}` ({seconds:.0f} s wall) from the checkpoints "
             f"{', '.join(p.format(seed='<s>') for p in CHECKPOINTS.values())}, seeds {seeds}, every model "
             "embedding the same clips. Linear probe on scene embeddings. **validation** (the choice): each task's "
             "train clips only, 30% of their groups (voices, words, programs) scored, the probe fitted on the rest "
             "(`corpus.evaluate.validation_split`); no test clip is read. **test** (reported, not chosen on): the "
             "task's train / test split of `make report-audio-corpus`. Decision rule, fixed before the runs: re-ship "
             "statistics pooling only if on validation the voice task is supported and no task is contradicted on "
             "validation or test.", "", f"Intervals: {RULE}.", "",
             f"**Decision: {'re-ship statistics pooling' if ship else 'keep the shipped mean-pooled model'}** "
             f"({reason}).", ""]
    for split, tasks in result.items():
        lines += [f"## {split}", "", "| task | classes | fit / scored clips | log-mel | mean per seed | stats per seed "
                  "| stats - mean | stats - log-mel | mean - log-mel |", "|---|---|---|---|---|---|---|---|---|"]
        for task, r in tasks.items():
            per_seed = {p: " / ".join(f"{r['accuracy'][f'{p}/{s}']:.3f}" for s in seeds) for p in CHECKPOINTS}
            cells = [f"{d['estimate']:+.3f} [{d['interval_95'][0]:+.3f}, {d['interval_95'][1]:+.3f}] {d['verdict']}"
                     for d in (r["stats - mean"], r["stats - log-mel"], r["mean - log-mel"])]
            lines.append(f"| {task} | {r['classes']} | {r['fit']} / {r['scored']} | {r['accuracy'][BASELINE]:.3f} | "
                         f"{per_seed['mean']} | {per_seed['stats']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio.pooling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("artifacts/audio-corpus"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--report", type=Path, default=Path("reports/audio_pooling.md"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    clips, features = embed_clips(args.corpus, args.seeds)
    result: dict[str, Any] = {}
    for split in ("validation", "test"):
        compared = {task: compare_task(c, features, args.seeds, split == "validation") for task, c in clips.items()}
        result[split] = {task: r for task, r in compared.items() if r is not None}
    command = "python -m benchmarks.audio.pooling " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(result, args.seeds, command, time.perf_counter() - started))
    args.report.with_suffix(".json").write_text(json.dumps({"decision": decide(result), **result}, indent=1) + "\n")
    print(args.report.read_text())
    return result


if __name__ == "__main__":
    main()
