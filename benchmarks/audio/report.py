"""`python -m benchmarks.audio.report`: the audio family's figures -> reports/audio.md (+ PNG).

On held-out synthetic audio (seed 7; training used seed 0), through the HEAR module
(`hear_infersuite`, the exported ONNX graphs on onnxruntime, the service's windowing):
- linear-probe accuracy and nearest-neighbour retrieval mAP of the scene embeddings;
- onset detection F-measure (+-200 ms) from timestamp embeddings (50 ms hop): the novelty
  threshold is tuned on half of the event clips and scored on the other half;
- scene-embedding real-time factor on this CPU (audio seconds per wall second, best of 3), with
  the CPU-time figure next to it because the cores are shared with other jobs;
- PaSST with vs without Patchout: seconds per training epoch and test accuracy (from training);
- generality (held-out classes, other tasks, Patchout at equal compute) from
  artifacts/audio/generality.json (`benchmarks.audio.generality`);
- the CPU cost of denormal input before and after the finite front end (`benchmarks.audio.denormal`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

import hear_infersuite as hear
from benchmarks.audio import denormal as audio_denormal
from benchmarks.audio import generality as audio_generality
from benchmarks.audio import quant_quality as audio_quant_quality
from hear_infersuite.api import TIMESTAMP_WINDOW_MS
from models.audio.data import AudioDataConfig, make_audio_data
from models.audio.metrics import (
    best_threshold,
    detect_onsets,
    linear_probe_accuracy,
    novelty,
    onset_f_measure,
    retrieval_map,
)

matplotlib.use("Agg")
from matplotlib import pyplot as plt

EMBEDDERS = {"passt": "audio-passt-fp32", "bow": "audio-bow-fp32"}
RTF_GOAL = 300.0


def scene(audio: np.ndarray, model: hear.HearModel) -> np.ndarray:
    return hear.get_scene_embeddings(torch.from_numpy(audio), model).numpy()


def timestamps(audio: np.ndarray, model: hear.HearModel) -> tuple[np.ndarray, np.ndarray]:
    embeddings, stamps = hear.get_timestamp_embeddings(torch.from_numpy(audio), model)
    return embeddings.numpy(), stamps.numpy().astype(np.float64)


def quality(model: hear.HearModel, data: Any) -> dict[str, float]:
    train = scene(data.train_audio, model)
    test = scene(data.test_audio, model)
    return {"linear_probe_accuracy": linear_probe_accuracy(train, data.train_labels, test, data.test_labels),
            "retrieval_map": retrieval_map(test, data.test_labels)}


def onsets(model: hear.HearModel, data: Any) -> dict[str, Any]:
    embeddings, stamps = timestamps(data.event_audio, model)
    window_s = model.timestamp_window_ms / 1000
    half = len(embeddings) // 2
    threshold = best_threshold(list(embeddings[:half]), list(stamps[:half]), data.event_onsets[:half], window_s)
    found = [detect_onsets(e, t, window_s, threshold) for e, t in zip(embeddings[half:], stamps[half:], strict=True)]
    score = onset_f_measure([np.array(o) for o in data.event_onsets[half:]], found)
    return {**score, "threshold": threshold, "scored_clips": len(embeddings) - half,
            "example": {"times_s": stamps[half] / 1000.0, "novelty": novelty(embeddings[half], round(
                window_s / 2 / (model.timestamp_hop_ms / 1000))), "reference": data.event_onsets[half],
                "found": found[0]}}


def _best_of(model: hear.HearModel, clips: np.ndarray, repeats: int) -> tuple[float, float]:
    """(best wall s, best CPU s of this process) of the scene embeddings of `clips`."""
    scene(clips[:1], model)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        scene(clips, model)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def real_time_factor(path: Path, seconds: float = 60.0, repeats: int = 3) -> dict[str, float]:
    """Scene embeddings of 6 clips of 10 s (60 windows, batched): audio seconds per second, with
    onnxruntime's default threads (wall clock), and with one thread (CPU time: one core's worth)."""
    clips = 0.1 * np.random.default_rng(0).standard_normal((6, int(seconds / 6 * 32000))).astype(np.float32)
    wall, _ = _best_of(hear.load_model(str(path)), clips, repeats)
    _, one_core = _best_of(hear.load_model(str(path), threads=1), clips, repeats)
    return {"audio_seconds": seconds, "best_wall_s": wall, "rtf_wall": seconds / wall,
            "rtf_per_core": seconds / one_core, "load_average_1m": os.getloadavg()[0]}


def plot_onsets(results: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 2.4 * len(results)), sharex=True)
    for ax, (name, result) in zip(np.atleast_1d(axes), results.items(), strict=True):
        example = result["onsets"]["example"]
        ax.plot(example["times_s"], example["novelty"], label="novelty (cosine distance, t +- 0.25 s)")
        ax.axhline(result["onsets"]["threshold"], color="grey", linestyle=":", label="threshold (tuned)")
        for i, onset in enumerate(example["reference"]):
            ax.axvline(onset, color="green", alpha=0.6, label="reference onset" if i == 0 else None)
        for i, onset in enumerate(example["found"]):
            ax.axvline(onset, color="red", linestyle="--", label="detected" if i == 0 else None)
        ax.set_title(f"{name}: timestamp-embedding novelty on a held-out event clip")
        ax.legend(loc="upper right", fontsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _patchout_table(artifacts: Path) -> list[str]:
    path = artifacts / "audio" / "quality.json"
    if not path.is_file():
        return [f"(no {path}: train with `python -m models.audio.train` to get the Patchout comparison)"]
    quality_json = json.loads(path.read_text())
    lines = ["| PaSST training | test accuracy | s / epoch (wall) | CPU s / epoch | patchout |",
             "|---|---|---|---|---|"]
    for key, label in (("passt", "with Patchout (exported)"), ("passt_no_patchout", "without Patchout")):
        if key in quality_json:
            m = quality_json[key]
            lines.append(f"| {label} | {m['test_accuracy']:.3f} | {m['epoch_seconds']:.1f} | "
                         f"{m['epoch_cpu_seconds']:.1f} | {m['patchout']} |")
    if {"passt", "passt_no_patchout"} <= set(quality_json):
        lines.append("\nOne training run each: the difference is unresolved (one seed: training variance not "
                     "measured, models/statistics.py); the equal-compute comparison below has seeds.")
    bow = quality_json.get("bow", {})
    if bow:
        lines.append(f"\nBag-of-words MLP head (the paper's classifier on the histograms): test accuracy "
                     f"{bow['test_accuracy']:.3f}; the whole BoW training took {bow['train_seconds']:.0f} s.")
    runs = quality_json.get("wall_seconds_by_run", {})
    lines.append("\nTraining runs (wall, shared cores): " + ", ".join(f"{k}: {v:.0f} s" for k, v in runs.items()) + ".")
    return lines


def _denormal_lines(denormal: dict[str, Any] | None) -> list[str]:
    if denormal is None:
        return ["(no artifacts/audio/{passt,bow}.pt checkpoints to export the before/after graphs from)"]
    before = [rows["before"] for rows in denormal.values()]
    worst = max(cells[names[0]][0] / cells[names[1]][0] for cells in before for names in [list(cells)])
    lines = [f"CPU: {audio_denormal.cpu_model()}. {audio_denormal.SECONDS} s of audio at 32 kHz as "
             f"{audio_denormal.SECONDS} scene windows in one batch, one-thread session, CPU seconds of this "
             "process, best of 3 (`python -m benchmarks.audio.denormal` prints the same table).", "",
             *audio_denormal.table(denormal)]
    if worst < 2.0:
        lines += ["", f"On this CPU denormal arithmetic cost at most {worst:.1f}x a tone even before the fix, so "
                  "this table shows that the fix costs nothing and makes the output finite, not a speed-up. The "
                  "issue's ~60x (4.2 s against 0.07 s through PaSST) was measured on another machine; there, "
                  "what protects the service is by construction (no denormal reaches the model: flushed to zero "
                  "in numpy, and the graph's first operation scales each window to peak 1), not measured here."]
    return lines


def render(results: dict[str, Any], artifacts: Path, command: str, data_config: AudioDataConfig,
           denormal: dict[str, Any] | None = None) -> str:
    lines = [
        "# Audio embeddings: quality and speed", "",
        f"Written by `{command}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) "
        "shared with other jobs. Held-out synthetic audio (seed 7): "
        f"{data_config.clips_per_class} clips x 10 classes of {data_config.clip_seconds:g} s "
        f"({1 - data_config.test_share:.0%} probe training / {data_config.test_share:.0%} scored), "
        f"{data_config.event_clips} event clips of {data_config.event_clip_seconds:g} s.", "",
        "| embedder | dim | linear probe acc. | retrieval mAP | onset F (+-200 ms) | P | R | "
        "scene RTF, wall, default threads | scene RTF per core (1 thread, CPU time) | >= 300x on the wall clock |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        q, o, s = r["quality"], r["onsets"], r["speed"]
        lines.append(f"| {name} ({EMBEDDERS[name]}) | {r['dim']} | {q['linear_probe_accuracy']:.3f} | "
                     f"{q['retrieval_map']:.3f} | {o['f_measure']:.3f} | {o['precision']:.2f} | {o['recall']:.2f} | "
                     f"{s['rtf_wall']:.0f}x | {s['rtf_per_core']:.0f}x | "
                     f"{'yes' if s['rtf_wall'] >= RTF_GOAL else 'no'} |")
    loads = ", ".join(f"{r['speed']['load_average_1m']:.1f}" for r in results.values())
    lines += [
        "", f"Real-time factor: {results[next(iter(results))]['speed']['audio_seconds']:.0f} s of audio as 1 s "
        "windows in batches of 64, onnxruntime CPU provider, best of 3. 1-minute load average after "
        f"the runs: {loads} (on {os.cpu_count()} cores): the wall figure is what this shared machine gave at "
        "that moment; the per-core figure is audio seconds per CPU second of a one-thread session, what one "
        "core does when it is not shared (two free cores would give up to twice that; not measured here).", "",
        "Onsets: novelty = cosine distance between the timestamp embeddings half a timestamp window "
        f"({TIMESTAMP_WINDOW_MS:g} ms, centred in the 1 s model window) after and before t; peaks above "
        "a threshold tuned on the other half of the clips, at least 0.5 s apart. No onset labels are used to "
        "train the embedders. The same with the whole 1 s of audio per timestamp embedding (novelty at "
        "t +- 0.5 s), which blurs an onset over +-0.5 s: "
        + ", ".join(f"{name} F = {r['onsets_1s']['f_measure']:.3f} (P {r['onsets_1s']['precision']:.2f}, "
                    f"R {r['onsets_1s']['recall']:.2f})" for name, r in results.items()) + ".", "",
        "![novelty](audio_onsets.png)", "", "## Patchout (training, from artifacts/audio/quality.json)", "",
        *_patchout_table(artifacts), "",
        "## Generality: held-out classes, other tasks, Patchout at equal compute", "",
        *audio_generality.report_lines(artifacts), "",
        "## Denormal and edge input: CPU cost before and after the finite front end", "",
        *_denormal_lines(denormal), "",
        "Before: the previous front end (`x + 1e-12` before the log, which the exporter folds away) gives NaN "
        "embeddings on silence and denormal input. After: each window scaled to peak 1 and the mel power clamped "
        "before the log (models/audio/frontend.py); the service flushes denormal samples to zero "
        "(infersuite/services/audio/samples.py) and its onnxruntime sessions set `session.set_denormal_as_zero`.", "",
        "## Quantization quality that can see a loss (from artifacts/audio/quant_quality.json)", "",
        "`python -m benchmarks.audio.quant_quality`: each recipe on the repository's fp32 graph; 1,000 held-out "
        "1 s windows (data seed 7); the probe is fit once on fp32 embeddings of 1,000 other windows and applied "
        "unchanged to the quantized embeddings (exporters/audio_quality.py, also the quantization gate's metric). "
        "Sizes and speed: reports/quantization.md (`make quantize-report`).", "",
        *audio_quant_quality.report_lines(artifacts), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--report", type=Path, default=Path("reports/audio.md"))
    parser.add_argument("--clips-per-class", type=int, default=40)
    parser.add_argument("--event-clips", type=int, default=24)
    args = parser.parse_args(argv)
    data_config = AudioDataConfig(clips_per_class=args.clips_per_class, event_clips=args.event_clips, seed=7)
    data = make_audio_data(data_config)
    results = {}
    for name, model_name in EMBEDDERS.items():
        model = hear.load_model(str(args.repository / model_name))
        results[name] = {"dim": model.scene_embedding_size, "quality": quality(model, data),
                         "onsets": onsets(model, data)}
        model.timestamp_window_ms = 1000.0  # the comparison: all of the model window
        results[name]["onsets_1s"] = onsets(model, data)
        results[name]["speed"] = real_time_factor(args.repository / model_name)
        print(name, {k: v for k, v in results[name].items() if not k.startswith("onsets")}, flush=True)
    command = "python -m benchmarks.audio.report " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    plot_onsets(results, args.report.with_name("audio_onsets.png"))
    checkpoints = [args.artifacts / "audio" / f"{name}.pt" for name in EMBEDDERS]
    denormal = ({name: audio_denormal.measure(path) for name, path in zip(EMBEDDERS, checkpoints, strict=True)}
                if all(p.is_file() for p in checkpoints) else None)
    args.report.write_text(render(results, args.artifacts, command.strip(), data_config, denormal))
    print(args.report.read_text())
    return results


if __name__ == "__main__":
    main()
