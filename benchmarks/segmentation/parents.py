"""`python -m benchmarks.segmentation.parents`: does the ECO-M2F gate beat fixed depth over independently trained
parents, on scenes no study has looked at? (issue 27)

reports/segmentation.md fits the gate at every beta on one trained parent and scores it on the 450 test scenes
every earlier report read: its intervals resample test images only. Here:
- three parents (step 1), each trained from scratch with its own seed (0, 1, 2) by models.segmentation.train.run
  on the default synthetic scenes and model (cached in artifacts/segmentation_parents/seed<k>/: a rerun reuses
  a parent trained with the same settings);
- at each beta of reports/segmentation.md, steps 2-3 on each parent (the default gate design, on that parent's
  training scenes; the gate's seed is the parent's);
- a fresh test set: all the scenes of a scene seed (FRESH_SEED) that no other study draws, scored here only;
  nothing is chosen on it (the parents' epochs are chosen on their validation scenes, the betas are the report's);
- per beta, the gate minus the fixed-depth mix of the gate's own mean compute (each image sent at random to one
  of the two fixed depths around it, in the matching shares: its analytic expectation, models.segmentation.gating.
  expected_confusions), as a hierarchical bootstrap over parents x test scenes of dataset mIoU
  (models.statistics.hierarchical_bootstrap_pooled); and the share of the oracle's headroom the gate captures:
  (gate - mix) / (oracle - mix), the oracle at the same mean depth choosing each scene's exit with the test
  answers known (models.segmentation.gating.oracle_confusions).

Goals (issue 27): the gate above the expected mix at >= 4 of 7 betas (interval above 0), mean gain >= +0.3 points
across parents and betas; the gate capturing >= 40% of the oracle's headroom.

    python -m benchmarks.segmentation.parents [--parents 3] [--quick]   # make report-segmentation-parents
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
FRESH_SEED = 41  # scenes drawn here only
FRESH_IMAGES = 600
MEAN_GAIN_GOAL = 0.003  # mIoU, +0.3 points
BETAS_GOAL = 4
HEADROOM_GOAL = 0.40


def scene_config(quick: bool) -> Any:
    """The parents' training scenes (the default ones; 200 of them with --quick)."""
    from models.segmentation.data import SceneConfig

    return replace(SceneConfig(), n_images=200) if quick else SceneConfig()


def parent(seed: int, out: Path, quick: bool) -> tuple[Any, dict[str, Any]]:
    """The parent trained with `seed` (from <out>/seed<k>/ when trained with the same settings)."""
    from models.segmentation.eco_m2f import EcoM2FConfig
    from models.segmentation.train import TrainConfig, load_checkpoint, run

    scene_cfg, model_cfg, cfg = scene_config(quick), EcoM2FConfig(), TrainConfig(seed=seed)
    if quick:
        cfg = replace(cfg, epochs=1, gate_epochs=5)
        model_cfg = replace(model_cfg, n_layers=3, d_model=32, n_heads=2, ffn_dim=64, head_dim=16, gate_hidden=16)
    key = {"scenes": asdict(scene_cfg), "model": asdict(model_cfg), "train": asdict(cfg)}
    path = out / f"seed{seed}"
    if (path / "key.json").is_file() and json.loads((path / "key.json").read_text()) == json.loads(json.dumps(key)):
        model, checkpoint = load_checkpoint(path / "eco_m2f.pt")
        return model, {**checkpoint["metrics"], "cached": True}
    model, metrics = run(scene_cfg, model_cfg, cfg, 0.01, path, progress=False)
    (path / "key.json").write_text(json.dumps(key) + "\n")
    return model, {**metrics, "cached": False}


def _train(job: tuple[int, Path, bool]) -> tuple[int, bool]:
    """A worker process: the parent of one seed into the cache -> (seed, whether it was in the cache)."""
    torch.set_num_threads(1)
    return job[0], bool(parent(*job)[1]["cached"])


def measure(parents: int, out: Path, quick: bool, jobs: int = 1) -> dict[str, Any]:
    from benchmarks.segmentation.report import BETAS
    from models.segmentation.data import SceneConfig, make_scenes
    from models.segmentation.gating import expected_confusions, gate_choice, marginal_quality, oracle_confusions
    from models.segmentation.metrics import iou_counts, mean_iou
    from models.segmentation.train import TrainConfig, exit_table, fit_gate

    torch.set_num_threads(1)
    started = time.perf_counter()
    fresh_cfg = replace(SceneConfig(), seed=FRESH_SEED, n_images=80 if quick else FRESH_IMAGES)
    fresh = make_scenes(fresh_cfg)
    scenes = make_scenes(scene_config(quick))  # the parents' training scenes: steps 2-3 fit on them
    every = np.arange(len(fresh.images))
    cells: dict[float, list[dict[str, Any]]] = {beta: [] for beta in BETAS}
    counts: dict[float, dict[str, list[np.ndarray]]] = {beta: {"gate": [], "mix": [], "oracle": []} for beta in BETAS}
    was_cached = {}
    if jobs > 1:  # the parents train side by side, one process and one thread each, into the cache
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            was_cached = dict(pool.map(_train, [(seed, out, quick) for seed in range(parents)]))
    trained = []
    for seed in range(parents):
        model, metrics = parent(seed, out, quick)
        cached = was_cached.get(seed, metrics["cached"])
        trained.append({"seed": seed, "train_seconds": metrics.get("train_seconds"), "cached": cached,
                        "valid_miou_full_depth": max(metrics["valid_miou_full_depth_curve"])})
        print(f"parent {seed}: {'cached' if cached else 'trained'} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        train = exit_table(model, scenes, scenes.train)
        test = exit_table(model, fresh, every)
        rows = np.arange(len(every))
        shares = marginal_quality(test.confusions)  # each test scene's share of the dataset mIoU, per exit
        gate_cfg = replace(TrainConfig(seed=seed), gate_epochs=5) if quick else TrainConfig(seed=seed)
        for beta in BETAS:
            gated = copy.deepcopy(model)
            fit_gate(gated, train, beta, gate_cfg)
            choice = gate_choice(gated.gate, test.gate_features)
            layers = float(test.layers(choice).mean())
            arms = {"gate": test.confusions[rows, choice],
                    "mix": expected_confusions(test.confusions, test.exits, layers),
                    "oracle": oracle_confusions(test.confusions, shares, test.exits, layers)}
            for name, confusions in arms.items():
                counts[beta][name].append(iou_counts(confusions))
            cells[beta].append({"seed": seed, "layers": layers,
                                **{f"{name}_miou": mean_iou(c.sum(0)) for name, c in arms.items()},
                                "full_miou": test.miou(np.full(len(rows), len(test.exits) - 1))})
    return {"parents": trained, "jobs": jobs, "betas": list(BETAS), "cells": {str(b): v for b, v in cells.items()},
            "counts": counts, "fresh_scenes": asdict(fresh_cfg), "test_images": len(every), "quick": quick,
            "n_layers": test.exits[-1], "wall_seconds": time.perf_counter() - started}


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Per beta: gate - mix over parents x test scenes, the headroom captured; the goals."""
    from models.segmentation.metrics import mean_iou_of_counts
    from models.statistics import hierarchical_bootstrap_pooled

    rows = []
    for beta in result["betas"]:
        arrays = {name: np.stack(v) for name, v in result["counts"][beta].items()}
        interval = hierarchical_bootstrap_pooled(arrays["gate"], arrays["mix"], mean_iou_of_counts)
        cells = result["cells"][str(beta)]
        gain = float(np.mean([c["gate_miou"] - c["mix_miou"] for c in cells]))
        headroom = float(np.mean([c["oracle_miou"] - c["mix_miou"] for c in cells]))
        rows.append({"beta": beta, "gate_miou": float(np.mean([c["gate_miou"] for c in cells])),
                     "mix_miou": float(np.mean([c["mix_miou"] for c in cells])),
                     "layers": float(np.mean([c["layers"] for c in cells])),
                     "oracle_miou": float(np.mean([c["oracle_miou"] for c in cells])),
                     "gain": gain, "interval_95": [interval.low, interval.high], "verdict": interval.verdict,
                     "headroom": headroom, "captured": gain / headroom if headroom > 0 else None})
    above = sum(r["verdict"] == "supported" for r in rows)
    mean_gain = float(np.mean([r["gain"] for r in rows]))
    # the share of the summed headroom the gate's summed gain covers (a ratio of means: a beta with almost no
    # headroom cannot swing it)
    total_headroom = sum(r["headroom"] for r in rows)
    mean_captured = mean_gain * len(rows) / total_headroom if total_headroom > 0 else None
    return {"rows": rows, "betas_above": above, "mean_gain": mean_gain, "mean_captured": mean_captured,
            "goals": {"betas_above": above >= BETAS_GOAL, "mean_gain": mean_gain >= MEAN_GAIN_GOAL,
                      "captured": mean_captured is not None and mean_captured >= HEADROOM_GOAL}}


def render(result: dict[str, Any], figures: dict[str, Any], command: str) -> str:
    from models.statistics import RULE

    fresh = result["fresh_scenes"]
    trained = result["parents"]
    lines = [
        "# ECO-M2F's gate over independently trained parents, on fresh scenes (issue 27)", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({result['wall_seconds']:.0f} s wall for this invocation; parents found in the cache cost none).", "",
        f"Parents: {len(trained)}, each step 1 from scratch with its own seed on the default synthetic scenes and "
        "model (models.segmentation.train.run, the settings `make models` trains with; its epoch chosen on its "
        "validation scenes): "
        + ", ".join(f"seed {p['seed']} (valid mIoU at full depth {100 * p['valid_miou_full_depth']:.1f}%"
                    + (f", {p['train_seconds']:.0f} s" if p.get("train_seconds") else "") + ")" for p in trained)
        + f" ({result['jobs']} trained at a time, one thread each). At every beta of reports/segmentation.md, "
        "steps 2-3 on each parent (the default gate design, fitted on that parent's training scenes).", "",
        f"Test: a fresh set, all {result['test_images']} scenes of scene seed {fresh['seed']} (drawn by this study "
        "only; nothing is chosen on them). Equal-compute mix: each image sent at random to one of the two fixed "
        "depths around the gate's mean depth, in the shares that match it (its analytic expectation, not one "
        "draw). Oracle: at the gate's own mean depth, each scene at the exit that maximises the sum of the scenes' "
        "shares of the dataset mIoU (models.segmentation.gating.marginal_quality, what the gate's targets are built "
        "from) under that compute (the Lagrangian optimum, oracle_confusions), knowing the test scenes' answers; "
        "headroom = the oracle's mIoU minus the mix, captured = the gate's gain over the mix / that headroom "
        "(the goal reads the gains and headrooms summed over betas). "
        f"Interval: {RULE}; over {len(trained)} parents x {result['test_images']} scenes, of dataset mIoU "
        "(hierarchical_bootstrap_pooled).", "",
        "| beta | gate mIoU % | layers | equal-compute mix % | gate - mix, points | 95% interval | verdict | "
        "oracle at the gate's depth % | headroom, points | captured |",
        "|---:|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for r in figures["rows"]:
        low, high = r["interval_95"]
        captured = "n/a" if r["captured"] is None else f"{100 * r['captured']:.0f}%"
        lines.append(f"| {r['beta']:g} | {100 * r['gate_miou']:.2f} | {r['layers']:.2f} | {100 * r['mix_miou']:.2f} | "
                     f"{100 * r['gain']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | {r['verdict']} | "
                     f"{100 * r['oracle_miou']:.2f} | {100 * r['headroom']:+.2f} | "
                     f"{captured} |")
    goals = figures["goals"]
    captured = "n/a" if figures["mean_captured"] is None else f"{100 * figures['mean_captured']:.0f}%"
    lines += ["", "Per parent (gate - mix, points, at each beta): " + "; ".join(
        f"beta {beta:g}: " + ", ".join(f"{100 * (c['gate_miou'] - c['mix_miou']):+.2f}"
                                       for c in result["cells"][str(beta)]) for beta in result["betas"]), "",
              "## Goals (issue 27)", "",
              f"- gate above the expected mix (interval above 0) at >= {BETAS_GOAL} of {len(figures['rows'])} betas: "
              f"**{figures['betas_above']}** ({'met' if goals['betas_above'] else 'MISSED'})",
              f"- mean gain over parents and betas >= +{100 * MEAN_GAIN_GOAL:.1f} points: "
              f"**{100 * figures['mean_gain']:+.2f}** ({'met' if goals['mean_gain'] else 'MISSED'})",
              f"- the gate capturing >= {100 * HEADROOM_GOAL:.0f}% of the oracle's headroom (summed over betas): "
              f"**{captured}** ({'met' if goals['captured'] else 'MISSED'})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.segmentation.parents",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--parents", type=int, default=3, help="independently trained parents (seeds 0, 1, ...)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "segmentation_parents",
                        help="trained parents are cached here (an interrupted study resumes)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="parents trained at once (one process and one torch thread each; the machine's cores)")
    parser.add_argument("--quick", action="store_true", help="tiny scenes and model, 1 epoch: seconds")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "segmentation_parents.md")
    args = parser.parse_args(argv)
    if args.parents < 2:
        parser.error("--parents must be >= 2: one parent measures no training variance")
    command = f"{parser.prog} {shlex.join(argv if argv is not None else sys.argv[1:])}".strip()
    result = measure(args.parents, args.out, args.quick, args.jobs)
    figures = analyse(result)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(result, figures, command))
    saved = {k: v for k, v in result.items() if k != "counts"} | {"analysis": figures, "command": command}
    args.report.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    print(args.report.read_text())


if __name__ == "__main__":
    main()
