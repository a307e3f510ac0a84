"""Fine-tuning on a user's labels, measured (issue 24): PaSST or the bag of words fine-tuned on each held-out
corpus task's train split by the user path (models/audio/user_data.py `--fine-tune-embedder`, the code a user
runs), per training seed, against the same embedder frozen and log-mel statistics, on the task's test clips.

The corpus's scene tasks (models/audio/corpus: words from held-out voices, voices on held-out words, instrument
family and pitch class from held-out instruments) are label files of the user path's CSV layout
(`tasks/<name>.csv`: file, label, split, group), read as a user's are (`prepare_csv`; a HEAR task folder
`tasks/<name>/` is read with `prepare_task`). The validation part is a seeded fifth of the train split's groups
(the corpus's groups are what the test holds out: voices, words, instruments). Per seed the embedder starts
from the shipped graph's weights, trains EPOCHS on the fit part of the train split and keeps the epoch a linear
probe scores best on the validation part (the test clips are never read for it); then the linear probe of the
user path (standardised logistic regression) is fitted on the train clips and scored on the test clips, for the
fine-tuned and the frozen features alike. Each comparison (fine-tuned minus frozen, fine-tuned minus log-mel
statistics) is a hierarchical bootstrap over seeds x test clips (`models.statistics.hierarchical_bootstrap`,
paired: the same test clips).

    python -m models.audio.fine_tune_study --corpus artifacts/audio-corpus --embedder passt --seeds 0 1 2 \\
        --epochs 10 --learning-rate 1e-4 3e-4 1e-3 --report reports/audio_fine_tune.md  # make report-audio-fine-tune
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio import fine_tune as tuning
from models.audio.metrics import linear_probe_predictions
from models.audio.user_data import (
    ARCHITECTURE_TITLES,
    BASELINE,
    fine_tuned_features,
    fine_tuned_model_name,
    frozen_features,
    prepare_csv,
    prepare_task,
    rates_problem,
    write_report,
)
from models.statistics import RULE, hierarchical_bootstrap

TASKS = ("word_unseen_voice", "voice_unseen_word", "pitch_class_unseen_instrument", "family_unseen_instrument")


def _correct(features: np.ndarray, y: np.ndarray, train: list[int], test: list[int]) -> np.ndarray:
    """(test clips,) 1.0 where the linear probe fitted on the train clips is right."""
    return (linear_probe_predictions(features[train], y[train], features[test]) == y[test]).astype(np.float64)


def _compare(tuned: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """`tuned` (seeds, test clips) minus `other` (test clips,): per seed and the hierarchical bootstrap."""
    table = tuned - other[None, :]
    found = hierarchical_bootstrap(table, seed=0)
    return {"per_seed": [round(float(v), 4) for v in table.mean(1)], "mean": round(found.estimate, 4),
            "interval_95": [round(found.low, 4), round(found.high, 4)], "verdict": found.verdict}


def task_path(corpus: Path, name: str) -> Path | None:
    """The task's label file (CSV layout) or HEAR folder under corpus/tasks, None when neither exists."""
    csv, folder = corpus / "tasks" / f"{name}.csv", corpus / "tasks" / name
    return csv if csv.is_file() else folder if (folder / "task_metadata.json").is_file() else None


def run_task(corpus: Path, name: str, repository: Path, embedder: str, seeds: list[int], epochs: int,
             learning_rates: list[float], progress: bool) -> dict[str, Any]:
    path = task_path(corpus, name)
    assert path is not None
    prepared = prepare_csv(corpus, path, 0.25, 0) if path.suffix == ".csv" else prepare_task(path)
    (train, test), = prepared.folds
    frozen, _ = frozen_features(prepared, repository)
    accuracy = {title: float(_correct(x[0], prepared.y, train, test).mean()) for title, x in frozen.items()}
    baseline = _correct(frozen[BASELINE][0], prepared.y, train, test)
    same = _correct(frozen[ARCHITECTURE_TITLES[embedder]][0], prepared.y, train, test)
    tuned, runs = [], []
    for seed in seeds:
        features, run, _ = fine_tuned_features(prepared, repository, epochs, seed, progress, learning_rates, embedder)
        tuned.append(_correct(features[0], prepared.y, train, test))
        fold, = run["folds"]
        runs.append({"seed": seed, "accuracy": round(float(tuned[-1].mean()), 4), **fold})
        print(f"{name} seed {seed}: {runs[-1]['accuracy']:.3f} (frozen {same.mean():.3f}, log-mel "
              f"{baseline.mean():.3f}; epoch {fold['chosen_epoch']}, {fold['train_seconds']:.0f} s)",
              file=sys.stderr, flush=True)
    table = np.stack(tuned)
    return {"classes": len(prepared.names), "train": len(train), "test": len(test),
            "frozen_accuracy": {t: round(a, 4) for t, a in accuracy.items()}, "runs": runs,
            "minus_frozen": _compare(table, same), "minus_log_mel": _compare(table, baseline)}


def render(found: dict[str, Any], command: str, seconds: float) -> str:
    name, frozen = tuning.ARCHITECTURES[found["embedder"]], ARCHITECTURE_TITLES[found["embedder"]]
    tasks = found["tasks"]
    first = next(iter(tasks.values()))["runs"][0]
    grid = [g["learning_rate"] for g in first.get("learning_rate_grid", [])]
    rates = (f"AdamW at each of {', '.join(f'{r:g}' for r in grid)} from the same start" if len(grid) > 1
             else f"AdamW {first['learning_rate']:g}")
    lines = [
        f"# {name[0].upper() + name[1:]} fine-tuned on each held-out task's train split (issue 24)", "",
        f"Produced by `{command}` ({seconds:.0f} s wall). The user path's fine-tuning "
        f"(`python -m models.audio.user_data --fine-tune {found['epochs']} --fine-tune-embedder "
        f"{found['embedder']}`, models/audio/fine_tune.py) on the corpus's held-out scene tasks, read as a user's "
        f"labelled recordings are: {name} from the shipped graph's weights, {found['epochs']} epochs of "
        f"cross-entropy on the fit clips' 1 s windows ({rates}, the head alone first), the "
        f"{'rate and ' if len(grid) > 1 else ''}epoch chosen by a linear probe on the validation clips (a seeded "
        "fifth of the train split's groups, held "
        "out as the test holds out voices, words or instruments; the test clips are never read for it), seeds "
        f"{', '.join(map(str, found['seeds']))}. Then the same linear probe for every embedder, fitted on the train "
        "clips and scored on the test clips, whose voices, words or instruments no embedder and no probe saw.", "",
        f"Rule: {RULE}.", "",
        "## Test accuracy (linear probe)", "",
        f"| task | classes | train / test clips | log-mel statistics | {frozen} frozen | {name} fine-tuned, per seed "
        f"| chosen {'rate, ' if len(grid) > 1 else ''}epoch per seed | fine-tuning s per seed |",
        "|---|---|---|---|---|---|---|---|"]
    for task, t in tasks.items():
        lines.append(f"| {task} | {t['classes']} | {t['train']} / {t['test']} | "
                     f"{t['frozen_accuracy'][BASELINE]:.3f} | {t['frozen_accuracy'][frozen]:.3f} | "
                     + ", ".join(f"{r['accuracy']:.3f}" for r in t["runs"]) + " | "
                     + ", ".join(f"{r['learning_rate']:g} @ {r['chosen_epoch']}" if len(grid) > 1
                                 else str(r["chosen_epoch"]) for r in t["runs"]) + " | "
                     + ", ".join(f"{sum(g['train_seconds'] for g in r.get('learning_rate_grid', [r])):.0f}"
                                 for r in t["runs"]) + " |")
    for key, label in (("minus_frozen", f"minus {frozen} frozen"), ("minus_log_mel", "minus log-mel statistics")):
        lines += ["", f"## Fine-tuned {label} (hierarchical bootstrap, seeds x test clips)", "",
                  "| task | per seed | mean | 95% interval | verdict |", "|---|---|---|---|---|"]
        for task, t in tasks.items():
            c = t[key]
            lines.append(f"| {task} | {', '.join(f'{v:+.3f}' for v in c['per_seed'])} | {c['mean']:+.3f} | "
                         f"{c['interval_95'][0]:+.3f} to {c['interval_95'][1]:+.3f} | {c['verdict']} |")
    if len(grid) > 1:
        lines += ["", "## Best validation accuracy per rate (the rate kept: the highest; a tie: the first)", "",
                  "| task | seed | " + " | ".join(f"{r:g}" for r in grid) + " | kept |",
                  "|---|---|" + "---|" * len(grid) + "---|"]
        for task, t in tasks.items():
            for r in t["runs"]:
                lines.append(f"| {task} | {r['seed']} | " + " | ".join(
                    f"{g['validation_score']:.3f} (epoch {g['chosen_epoch']})" for g in r["learning_rate_grid"])
                    + f" | {r['learning_rate']:g} |")
    lines += ["", "## Validation accuracy by epoch at the rate kept (epoch 0: the start, the head trained alone)",
              ""]
    for task, t in tasks.items():
        for r in t["runs"]:
            curve = ", ".join(f"{h['epoch']}: {h['validation_score']:.3f}" for h in r["history"] if "epoch" in h)
            lines.append(f"- {task}, seed {r['seed']} ({r['fit']} fit, {r['validation']} validation clips): {curve}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.fine_tune_study",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a folder models.audio.corpus build wrote")
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"),
                        help="holds audio-passt-fp32 and audio-bow-fp32, the start and the frozen references")
    parser.add_argument("--embedder", choices=tuple(ARCHITECTURE_TITLES), default="passt")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="scene tasks of the corpus (tasks/<name>)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[tuning.LEARNING_RATE],
                        help="AdamW rates; several: the validation clips choose one per task and seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if min(args.learning_rate) <= 0:
        parser.error(rates_problem(args.learning_rate))
    missing = [t for t in args.tasks if task_path(args.corpus, t) is None]
    if missing:
        parser.error(f"no such task in {args.corpus / 'tasks'}: {', '.join(missing)} (make audio-corpus)")
    if not (args.repository / fine_tuned_model_name(args.embedder)).is_dir():
        parser.error(f"{args.repository} holds no {fine_tuned_model_name(args.embedder)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    found = {"embedder": args.embedder, "epochs": args.epochs, "seeds": args.seeds,
             "tasks": {t: run_task(args.corpus, t, args.repository, args.embedder, args.seeds, args.epochs,
                                   args.learning_rate, not args.no_progress) for t in args.tasks}}
    command = "python -m models.audio.fine_tune_study " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_report(args.report, render(found, command, time.perf_counter() - started), found)
    return found


if __name__ == "__main__":
    main()
