"""`python -m benchmarks.audio.generality`: do the embeddings generalise? HEAR-style protocol:
frozen embeddings, a probe trained on each downstream task -> artifacts/audio/generality.json
(`benchmarks.audio.report` renders it into reports/audio.md).

1. Held-out classes: PaSST and the bag of words trained on 6 of the 10 synthetic classes
   (SEEN); a logistic-regression probe on their frozen scene embeddings is trained and scored on
   the 4 classes they never saw (HELD_OUT, fresh clips of data seed 7), with a bootstrap 95%
   interval over the scored clips. References: an untrained PaSST (random weights) and log-mel
   statistics (per-bin mean and std over time, nothing learned).
2. Other tasks, no class labels: tone-frequency regression (200-4000 Hz, target log2 f) and
   AM-rate regression (2-30 Hz, target log2 rate), a ridge probe, R^2 on held-out clips.
3. Patchout at equal compute: PaSST with and without Patchout, each given the same CPU-time
   budget (epochs = budget / its measured CPU seconds per epoch), 3 seeds, 10-class test
   accuracy as mean +- sd.

Trains on the CPU for a few minutes: run it once, with `nice`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from infersuite.services.audio import windows
from models.audio.bow import BowConfig
from models.audio.data import CLASSES, SAMPLE_RATE, AudioData, AudioDataConfig, make_audio_data
from models.audio.frontend import FrontEndConfig, LogMelStatistics
from models.audio.passt import Passt, PasstConfig
from models.audio.train import TrainConfig, clip_mels, load_checkpoint, train_bow, train_passt

SEEN = (0, 1, 2, 4, 6, 8)  # tone, harmonic, chirp_up, am_slow, clicks_slow, noise_low
HELD_OUT = (3, 5, 7, 9)  # chirp_down, am_fast, clicks_fast, noise_high: new variants of seen kinds


def subset(data: AudioData, classes: tuple[int, ...]) -> AudioData:
    """The clips of `classes`, labels renumbered 0..len(classes)-1."""
    index = {c: i for i, c in enumerate(classes)}

    def pick(audio: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.isin(labels, classes)
        return audio[keep], np.array([index[int(c)] for c in labels[keep]], np.int64)

    train, test = pick(data.train_audio, data.train_labels), pick(data.test_audio, data.test_labels)
    return replace(data, train_audio=train[0], train_labels=train[1], test_audio=test[0], test_labels=test[1])


@torch.no_grad()
def scene_embeddings(embed: Any, clips: np.ndarray, window: int = 32000) -> np.ndarray:
    """(N, samples) -> (N, D): mean over the service's scene windows (torch forward = the graph)."""
    per_clip = [windows.scene_windows(clip, window) for clip in clips]
    flat = torch.from_numpy(np.concatenate(per_clip))
    out = torch.cat([embed(flat[i:i + 64]) for i in range(0, len(flat), 64)]).numpy()
    return out.reshape(len(clips), -1, out.shape[-1]).mean(1)


def _noisy(rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    noise = 10 ** (-rng.uniform(10, 30) / 20) * rng.standard_normal(signal.size)  # SNR 10-30 dB
    signal = signal / np.sqrt(np.mean(signal ** 2)) + noise
    return (signal * 10 ** (rng.uniform(-30, 0) / 20) * 0.1).astype(np.float32)


def regression_task(kind: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2 s clips with a known continuous parameter -> (audio (N, samples), target log2 value)."""
    rng, t = np.random.default_rng(seed), np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    clips, targets = [], []
    for _ in range(count):
        if kind == "tone frequency":
            value = float(np.exp(rng.uniform(np.log(200), np.log(4000))))
            clip = np.sin(2 * np.pi * value * t + rng.uniform(0, 2 * np.pi))
        else:  # AM rate, on a random carrier
            value = float(np.exp(rng.uniform(np.log(2), np.log(30))))
            carrier = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
            clip = carrier * (0.55 + 0.45 * np.sin(2 * np.pi * value * t + rng.uniform(0, 2 * np.pi)))
        clips.append(_noisy(rng, clip))
        targets.append(np.log2(value))
    return np.stack(clips), np.array(targets)


def bootstrap_interval(correct: np.ndarray, seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, (draws, correct.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def held_out_probe(embed: Any, data: AudioData) -> dict[str, Any]:
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    probe.fit(scene_embeddings(embed, data.train_audio), data.train_labels)
    correct = probe.predict(scene_embeddings(embed, data.test_audio)) == data.test_labels
    return {"accuracy": float(correct.mean()), "ci95": bootstrap_interval(correct), "scored": int(correct.size)}


def regression_r2(embed: Any, task: dict[str, np.ndarray]) -> float:
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    probe.fit(scene_embeddings(embed, task["train_x"]), task["train_y"])
    return float(r2_score(task["test_y"], probe.predict(scene_embeddings(embed, task["test_x"]))))


def regression_tasks(count: int = 300, seed: int = 11) -> dict[str, dict[str, np.ndarray]]:
    tasks = {}
    for offset, kind in enumerate(("tone frequency", "AM rate")):
        x, y = regression_task(kind, count, seed + offset)
        cut = int(0.7 * count)
        tasks[kind] = {"train_x": x[:cut], "train_y": y[:cut], "test_x": x[cut:], "test_y": y[cut:]}
    return tasks


def seen_class_embedders(train_data: AudioData) -> dict[str, Any]:
    seen = subset(train_data, SEEN)
    front = FrontEndConfig()
    mels = {"train": clip_mels(seen.train_audio, front), "test": clip_mels(seen.test_audio, front)}
    passt, _ = train_passt(seen, mels, TrainConfig(), PasstConfig(n_classes=len(SEEN)), progress=False)
    bow, _ = train_bow(seen, mels, TrainConfig(), BowConfig(n_classes=len(SEEN)), progress=False)
    torch.manual_seed(0)
    return {"PaSST, trained on the 6 seen classes": passt, "bag of words, trained on the 6 seen classes": bow,
            "PaSST, untrained (random weights)": Passt().eval(),
            "log-mel statistics (nothing learned)": LogMelStatistics()}


def patchout_at_equal_compute(data: AudioData, budget_cpu_s: float, seeds: int) -> dict[str, Any]:
    """Each variant gets `budget_cpu_s` of CPU: its epochs = budget / its CPU seconds per epoch."""
    front = FrontEndConfig()
    mels = {"train": clip_mels(data.train_audio, front), "test": clip_mels(data.test_audio, front)}
    variants = {"with Patchout": PasstConfig(),
                "without Patchout": PasstConfig(drop_freq_rows=0, drop_time_cols=0, drop_patches=0.0)}
    results: dict[str, Any] = {}
    for name, config in variants.items():
        _, probe = train_passt(data, mels, TrainConfig(passt_epochs=2, seed=100), config, progress=False)
        epochs = max(1, round(budget_cpu_s / probe["epoch_cpu_seconds"]))
        runs = []
        for seed in range(seeds):
            started = time.process_time()
            _, metrics = train_passt(data, mels, TrainConfig(passt_epochs=epochs, seed=seed), config, progress=False)
            runs.append({"seed": seed, "test_accuracy": metrics["test_accuracy"],
                         "train_cpu_s": time.process_time() - started})
        accuracy = np.array([r["test_accuracy"] for r in runs])
        results[name] = {"epochs": epochs, "cpu_s_per_epoch": probe["epoch_cpu_seconds"], "runs": runs,
                         "mean": float(accuracy.mean()), "sd": float(accuracy.std(ddof=1)) if seeds > 1 else 0.0}
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audio.generality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--budget-cpu-s", type=float, default=30.0, help="CPU seconds per Patchout-study run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clips-per-class", type=int, default=120, help="training clips per class (seed 0)")
    parser.add_argument("--rerender-report", type=Path, default=None, metavar="MD",
                        help="measure nothing: add the seed-level Patchout verdicts to a written audio report from "
                             "its own per-seed table (for a report whose artifacts/audio/*.json are gone)")
    args = parser.parse_args(argv)
    if args.rerender_report is not None:
        command = "python -m benchmarks.audio.generality " + " ".join(sys.argv[1:] if argv is None else argv)
        print(rerender_report(args.rerender_report, command))
        return {}
    torch.set_num_threads(1)
    started = time.perf_counter()
    train_data = make_audio_data(AudioDataConfig(clips_per_class=args.clips_per_class, event_clips=0, seed=0))
    embedders = seen_class_embedders(train_data)
    full = args.artifacts / "audio" / "passt.pt"
    if full.is_file():
        embedders["PaSST, trained on all 10 classes (saw the held-out ones)"] = load_checkpoint(full)[0]
    held_out = subset(make_audio_data(AudioDataConfig(clips_per_class=100, event_clips=0, seed=7)), HELD_OUT)
    tasks = regression_tasks()
    scores = {name: {"held_out_classes": held_out_probe(embed, held_out),
                     **{kind: regression_r2(embed, task) for kind, task in tasks.items()}}
              for name, embed in embedders.items()}
    results = {"seen": [CLASSES[c] for c in SEEN], "held_out": [CLASSES[c] for c in HELD_OUT],
               "held_out_clips": {"train": len(held_out.train_labels), "test": len(held_out.test_labels)},
               "regression_clips": {"train": 210, "test": 90}, "embedders": scores,
               "patchout_equal_compute": patchout_at_equal_compute(train_data, args.budget_cpu_s, args.seeds),
               "budget_cpu_s": args.budget_cpu_s, "train_config": asdict(TrainConfig()),
               "wall_seconds": time.perf_counter() - started}
    out = args.artifacts / "audio" / "generality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results



def report_lines(artifacts: Path) -> list[str]:
    """The reports/audio.md section from artifacts/audio/generality.json (or how to make it)."""
    path = artifacts / "audio" / "generality.json"
    if not path.is_file():
        return [f"(no {path}: run `nice python -m benchmarks.audio.generality` to measure it)"]
    r = json.loads(path.read_text())
    clips = r["held_out_clips"]
    lines = [f"Embedders trained on 6 classes ({', '.join(r['seen'])}); scored on the 4 held-out classes "
             f"({', '.join(r['held_out'])}) with a logistic-regression probe on frozen scene embeddings "
             f"({clips['train']} probe-training / {clips['test']} scored clips, data seed 7; 95% bootstrap interval), "
             f"and on two regression tasks with a ridge probe (R^2 on {r['regression_clips']['test']} held-out clips, "
             f"{r['regression_clips']['train']} to fit).", "",
             "| embedder | held-out 4-class accuracy [95% CI] | tone frequency R^2 | AM rate R^2 |",
             "|---|---|---|---|"]
    for name, s in r["embedders"].items():
        h = s["held_out_classes"]
        lines.append(f"| {name} | {h['accuracy']:.3f} [{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}] | "
                     f"{s['tone frequency']:.3f} | {s['AM rate']:.3f} |")
    lines += ["", f"Patchout at equal compute: each PaSST variant trained for {r['budget_cpu_s']:g} CPU seconds "
              "(epochs = budget / its own CPU seconds per epoch), 10-class test accuracy over "
              f"{len(next(iter(r['patchout_equal_compute'].values()))['runs'])} seeds:", "",
              "| PaSST | epochs in the budget | CPU s / epoch | test accuracy, mean +- sd | per seed | CPU s used |",
              "|---|---|---|---|---|---|"]
    for name, p in r["patchout_equal_compute"].items():
        lines.append(f"| {name} | {p['epochs']} | {p['cpu_s_per_epoch']:.2f} | {p['mean']:.3f} +- {p['sd']:.3f} | "
                     + ", ".join(f"{run['test_accuracy']:.3f}" for run in p["runs"]) + " | "
                     + ", ".join(f"{run['train_cpu_s']:.0f}" for run in p["runs"]) + " |")
    return lines + patchout_verdict(r["patchout_equal_compute"])


def patchout_verdict(variants: dict[str, Any]) -> list[str]:
    """With minus without Patchout, paired by training seed, at the seed level (models.statistics)."""
    from models.statistics import SEED_RULE, seed_level_interval

    with_runs, without_runs = (variants.get(k, {}).get("runs", []) for k in ("with Patchout", "without Patchout"))
    paired = sorted(set(r["seed"] for r in with_runs) & set(r["seed"] for r in without_runs))
    if not paired:
        return []
    accuracy = {(k, r["seed"]): r["test_accuracy"] for k, runs in (("with", with_runs), ("without", without_runs))
                for r in runs}
    found = seed_level_interval(np.array([accuracy["with", s] - accuracy["without", s] for s in paired]))
    return ["", f"With minus without Patchout at equal compute, paired by seed: {found.estimate:+.3f} "
            f"[{found.low:+.3f}, {found.high:+.3f}] test accuracy over {found.seeds} seeds: **{found.verdict}** "
            f"(rule: {SEED_RULE}; the test clips are not resampled: the interval holds training variance only)."]


PATCHOUT_ROW = re.compile(r"^\| (with Patchout|without Patchout) \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \+- [0-9.]+ \| "
                          r"([0-9., ]+) \| [0-9, ]+ \|$")
VERDICT_PREFIX = "With minus without Patchout at equal compute, paired by seed"
ONE_RUN = "One training run each: the difference is unresolved (one seed"
STAMP = "Patchout verdicts re-rendered from this report's own per-seed table by"


def rerender_report(report: Path, command: str) -> str:
    """reports/audio.md with the seed-level Patchout lines (the ones `report_lines` and the audio report now
    write) added from the report's own figures: the per-seed accuracies of its equal-compute table, in seed
    order as the study ran them. Earlier re-rendered lines are replaced; running it twice gives the same file."""
    lines: list[str] = []
    for line in report.read_text().split("\n"):
        if line.startswith((VERDICT_PREFIX, ONE_RUN)) and lines and lines[-1] == "":
            lines.pop()  # the blank line an earlier re-render put before it
        if not line.startswith((VERDICT_PREFIX, ONE_RUN, STAMP)):
            lines.append(line)
    runs = {m[1]: {"runs": [{"seed": i, "test_accuracy": float(a)} for i, a in enumerate(m[2].split(","))]}
            for m in (PATCHOUT_ROW.match(line) for line in lines) if m}
    last = max(i for i, line in enumerate(lines) if PATCHOUT_ROW.match(line))
    lines[last + 1:last + 1] = patchout_verdict(runs)  # ["", the verdict]
    full = next((i for i, line in enumerate(lines) if line.startswith("| without Patchout | 0.")), None)
    if full is not None:
        lines[full + 1:full + 1] = ["", f"{ONE_RUN}: training variance not measured, models/statistics.py); the "
                                        "equal-compute comparison below has seeds."]
    written = next(i for i, line in enumerate(lines) if line.startswith("Written by `"))
    lines.insert(written + 1, f"{STAMP} `{command}` (nothing retrained; the rest is that run's).")
    text = "\n".join(lines)
    report.write_text(text)
    return text


if __name__ == "__main__":
    main()
