"""`python -m benchmarks.audio.patchout`: does Patchout help PaSST at equal compute? A curve of CPU
budgets, many training seeds, a fresh test set, and a paired hierarchical interval
-> artifacts/audio/patchout.json and reports/audio_patchout.md (`make report-audio-patchout`).

Design (issues 25 and 27: a claim needs seeds, a fresh test set and a whole curve):
- Both variants are the same PaSST (`PasstConfig`) but for Patchout in training: with it (the
  shipped setting: 2 frequency rows, 2 time columns and 10% of the remaining patches dropped) and
  without it (every patch seen). Inference never drops patches.
- Equal compute: each variant gets the same CPU-second budget; its epochs = budget / its own CPU
  seconds per epoch, measured by a 2-epoch probe run in the same process just before (Patchout's
  epochs are cheaper, so it gets more of them). The learning-rate schedule (one cycle) spans the
  whole run, so each budget is its own run, not a point on a longer one.
- Training: the 10 synthetic classes of data seed 0 (`make_audio_data`), the same clips for every
  run; the training seed changes the initialisation, the batches and the dropped patches.
- Scored on a fresh test set: every clip of data seed 29 (not used by any other study here and never
  looked at while choosing anything: nothing is chosen; the budgets and the Patchout setting are
  fixed in advance).
- Interval: `models.statistics.hierarchical_bootstrap` over training seeds x test clips of the
  paired per-clip difference (with minus without, same seed, same clips). Verdict by the rule the
  reports share: supported / contradicted only when the interval excludes 0.

A run's result is saved as soon as it ends; rerunning the same command resumes (done runs are
kept when their budget, seed and data match).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio.data import AudioDataConfig, make_audio_data
from models.audio.frontend import FrontEndConfig
from models.audio.passt import PasstConfig
from models.audio.train import TrainConfig, clip_mels, passt_correct, train_passt
from models.statistics import RULE, hierarchical_bootstrap

VARIANTS = {"with Patchout": PasstConfig(),
            "without Patchout": PasstConfig(drop_freq_rows=0, drop_time_cols=0, drop_patches=0.0)}
TRAIN_DATA_SEED = 0
FRESH_TEST_SEED = 29


def run_key(variant: str, budget: float, seed: int) -> str:
    return f"{variant}|{budget:g}|{seed}"


def paired_differences(runs: dict[str, Any], budget: float, seeds: list[int]) -> np.ndarray:
    """(seeds, clips): with minus without Patchout, per fresh test clip, each seed paired with itself."""
    rows = []
    for seed in seeds:
        with_, without = (np.array(runs[run_key(v, budget, seed)]["correct"], np.float64) for v in VARIANTS)
        if with_.shape != without.shape:
            raise ValueError(f"seed {seed}, budget {budget:g}: the variants were scored on different clips")
        rows.append(with_ - without)
    return np.stack(rows)


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per budget that every variant finished for the same seeds (at least one)."""
    runs, rows = results["runs"], []
    for budget in results["budgets"]:
        seeds = [s for s in results["seeds"] if all(run_key(v, budget, s) in runs for v in VARIANTS)]
        if not seeds:
            continue
        accuracy = {v: np.array([np.mean(runs[run_key(v, budget, s)]["correct"]) for s in seeds]) for v in VARIANTS}
        interval = hierarchical_bootstrap(paired_differences(runs, budget, seeds))
        rows.append({"budget_cpu_s": budget, "seeds": seeds,
                     "epochs": {v: runs[run_key(v, budget, seeds[0])]["epochs"] for v in VARIANTS},
                     "accuracy": {v: a.tolist() for v, a in accuracy.items()},
                     "difference": {"estimate": interval.estimate, "low": interval.low, "high": interval.high,
                                    "verdict": interval.verdict, "clips": interval.units}})
    return rows


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def render(results: dict[str, Any], command: str) -> str:
    rows = summarise(results)
    lines = [
        "# PaSST with and without Patchout at equal compute: a curve over budgets, seeds, a fresh test set",
        "",
        f"Written by `{command}` on {results['written']} ({results['wall_s'] / 60:.0f} min on this machine, "
        f"one torch thread). Nothing here is chosen on the test set: the budgets, the Patchout setting and the "
        "training recipe were fixed before the run.",
        "",
        f"- Training: the 10 synthetic classes of data seed {TRAIN_DATA_SEED}, {results['train_clips']} clips, "
        f"the same for every run; recipe {json.dumps(results['train_config'])}.",
        f"- Variants: the same PaSST {json.dumps(results['passt_config'])}, with Patchout in training "
        f"({json.dumps(results['patchout'])}) or without it. Inference never drops patches.",
        "- Equal compute: epochs = budget / the variant's CPU seconds per epoch, measured by a 2-epoch probe in the "
        "same run (with Patchout: "
        + ", without: ".join(f"{results['cpu_s_per_epoch'][v]:.2f} CPU s" for v in VARIANTS) + " per epoch).",
        f"- Scored on a fresh test set: all {results['test_clips']} clips of data seed {FRESH_TEST_SEED}, used by no "
        "other study.",
        f"- Interval: hierarchical bootstrap over training seeds x test clips of the paired per-clip difference; "
        f"rule: {RULE}.",
        "",
        "| CPU budget (s) | epochs with / without | seeds | with Patchout, mean +- sd | without, mean +- sd | "
        "with minus without [95% interval] | seeds where with > without | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        a = {v: np.array(x) for v, x in row["accuracy"].items()}
        w, wo = a["with Patchout"], a["without Patchout"]
        d = row["difference"]
        lines.append(
            f"| {row['budget_cpu_s']:g} | {row['epochs']['with Patchout']} / {row['epochs']['without Patchout']} | "
            f"{len(row['seeds'])} | {w.mean():.3f} +- {_sd(w):.3f} | {wo.mean():.3f} +- {_sd(wo):.3f} | "
            f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | {int((w > wo).sum())} of {w.size} | "
            f"**{d['verdict']}** |")
    lines += ["", "Per seed (test accuracy on the fresh clips, with / without Patchout):", ""]
    for row in rows:
        per_seed = ", ".join(f"{s}: {x:.3f} / {y:.3f}" for s, x, y in
                             zip(row["seeds"], row["accuracy"]["with Patchout"], row["accuracy"]["without Patchout"],
                                 strict=True))
        lines.append(f"- {row['budget_cpu_s']:g} CPU s: {per_seed}")
    verdicts = [(r["budget_cpu_s"], r["difference"]["verdict"]) for r in rows]
    lines += ["", "## Reading", "", "; ".join(f"{b:g} CPU s: {v}" for b, v in verdicts) + ".",
              "This is the small synthetic task (2 s clips, 10 classes); the corpus-pretrained PaSST that ships was "
              "trained with Patchout and is not compared here (reports/audio_pretrain_seeds.md).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio.patchout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[15.0, 30.0, 60.0],
                        help="CPU seconds per training run (one run per budget, variant and seed)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--clips-per-class", type=int, default=120, help="training clips per class")
    parser.add_argument("--test-clips-per-class", type=int, default=100, help="fresh test clips per class")
    parser.add_argument("--out", type=Path, default=Path("artifacts/audio/patchout.json"))
    parser.add_argument("--report", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    if args.seeds < 1 or not args.budgets or min(args.budgets) <= 0:
        parser.error("--seeds must be >= 1 and every budget > 0")
    command = "python -m benchmarks.audio.patchout " + " ".join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = make_audio_data(AudioDataConfig(clips_per_class=args.clips_per_class, event_clips=0,
                                           seed=TRAIN_DATA_SEED))
    fresh = make_audio_data(AudioDataConfig(clips_per_class=args.test_clips_per_class, event_clips=0,
                                            seed=FRESH_TEST_SEED))
    fresh_audio = np.concatenate([fresh.train_audio, fresh.test_audio])
    fresh_labels = np.concatenate([fresh.train_labels, fresh.test_labels])
    front = FrontEndConfig()
    mels = {"train": clip_mels(data.train_audio, front), "test": clip_mels(data.test_audio, front)}
    fresh_mels = clip_mels(fresh_audio, front)
    identity = {"clips_per_class": args.clips_per_class, "test_clips_per_class": args.test_clips_per_class}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    runs = previous.get("runs", {}) if previous.get("identity") == identity else {}
    results: dict[str, Any] = {
        "identity": identity, "budgets": args.budgets, "seeds": list(range(args.seeds)),
        "train_clips": len(data.train_labels), "test_clips": len(fresh_labels),
        "train_config": {"optimizer": "AdamW, one-cycle schedule", "lr": TrainConfig().lr,
                         "batch_size": TrainConfig().batch_size},
        "passt_config": {k: v for k, v in asdict(PasstConfig()).items() if not k.startswith("drop_")},
        "patchout": {k: v for k, v in asdict(PasstConfig()).items() if k.startswith("drop_")},
        "cpu_s_per_epoch": {}, "runs": runs}
    for variant, config in VARIANTS.items():
        _, probe = train_passt(data, mels, TrainConfig(passt_epochs=2, seed=100), config, progress=False)
        results["cpu_s_per_epoch"][variant] = probe["epoch_cpu_seconds"]
    total = len(args.budgets) * args.seeds * len(VARIANTS)
    for budget in args.budgets:
        for seed in range(args.seeds):
            for variant, config in VARIANTS.items():
                key = run_key(variant, budget, seed)
                if key in runs:
                    continue
                epochs = max(1, round(budget / results["cpu_s_per_epoch"][variant]))
                cpu = time.process_time()
                model, _ = train_passt(data, mels, TrainConfig(passt_epochs=epochs, seed=seed), config,
                                       progress=False)
                correct = passt_correct(model, fresh_mels, fresh_labels)
                runs[key] = {"epochs": epochs, "train_cpu_s": time.process_time() - cpu,
                             "correct": correct.astype(int).tolist()}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results) + "\n")  # saved after every run: a rerun resumes
                print(f"[{len(runs)}/{total}] {key}: {epochs} epochs, accuracy {correct.mean():.3f}", flush=True)
    results["wall_s"] = time.perf_counter() - started
    results["written"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["summary"] = summarise(results)
    args.out.write_text(json.dumps(results) + "\n")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render(results, command))
    for row in results["summary"]:
        d = row["difference"]
        print(f"{row['budget_cpu_s']:g} CPU s: {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {d['verdict']}")
    return results


if __name__ == "__main__":
    main()
