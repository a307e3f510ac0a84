"""Does DIN train as well with sparse embedding tables under lazy Adam as with dense ones under Adam?

`--sparse-embeddings` (models/ctr/train.py) makes a training step with millions of ids some hundred times
cheaper (reports/ctr_regularisers.md), but lazy Adam is not Adam: a row's moments move only in the steps that
look it up, so rare rows learn on a different schedule. This study trains the regulariser study's long-tail
setting (models/ctr/study.py: 50,000 items with Zipf(1) exposure, DIN with PReLU, MBA at the study's
strength, early stopping on validation GAUC) both ways, with the same training seeds, on a world drawn with
its own seed (used here and in the regulariser sweep, benchmarks/ctr/regulariser_sweep.py, only),
and compares test GAUC with a hierarchical
bootstrap over training seeds x test users (models/statistics.py). Nothing is chosen on the test users.

    python -m benchmarks.ctr.sparse_quality [--seeds 8] [--threads 2]    # make report-ctr-sparse-quality
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORLD_SEED = 7  # a world (and test users) drawn here and in benchmarks/ctr/regulariser_sweep.py only
MARGIN = 0.005  # GAUC: below DIN's gain over its BaseModel in reports/ctr_quality.md (+0.0083)
LABELS = {"dense": "dense tables, Adam (the default)", "sparse": "sparse tables, lazy Adam (--sparse-embeddings)"}


def arms() -> dict[str, Any]:
    """The study's MBA run, and the same with sparse tables."""
    from models.ctr.study import PARTS

    dense = next(run for run in PARTS["reg"] if run.name == "reg_mba")
    sparse = replace(dense, name="reg_mba_sparse", train={**dense.train, "sparse_embeddings": True})
    return {"dense": dense, "sparse": sparse}


def per_user(record: dict[str, Any]) -> dict[int, tuple[int, float]]:
    return {int(user): (int(n), float(auc)) for user, (n, auc) in record["test"]["per_user"].items()}


def measure(seeds: int, threads: int, out: Path, quick: bool = False) -> dict[str, Any]:
    import torch

    from models.ctr.data import make_click_data
    from models.ctr.study import run_once, world

    torch.set_num_threads(threads)
    config = replace(world("reg", quick), seed=WORLD_SEED)
    data = make_click_data(config)
    started = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in LABELS}
    for seed in range(seeds):
        for name, run in arms().items():
            records[name] += run_once(run, seed, data, out, quick)
            print(f"{name} seed {seed}: test GAUC {records[name][-1]['test']['gauc']:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return {"world": asdict(config), "seeds": seeds, "threads": threads, "quick": quick,
            "test_users": len(data.test_users), "records": records, "wall_seconds": time.perf_counter() - started}


def paired(variant: list[dict[str, Any]], control: list[dict[str, Any]]) -> dict[str, Any]:
    """Test GAUC of `variant` minus `control` (run records of the same seeds, in the same order): per user
    (impression-weighted), paired by seed, seeds x users resampled (models/statistics.py)."""
    from models.statistics import hierarchical_bootstrap

    if [r["seed"] for r in variant] != [r["seed"] for r in control]:
        raise ValueError("the two arms must hold the same training seeds in the same order")
    a, b = [per_user(r) for r in variant], [per_user(r) for r in control]
    users = sorted(set.intersection(*(set(x) for x in a + b)))
    differences = np.array([[x[u][1] - y[u][1] for u in users] for x, y in zip(a, b, strict=True)])
    weights = np.array([b[0][u][0] for u in users], np.float64)
    interval = hierarchical_bootstrap(differences, weights)
    return {"estimate": interval.estimate, "interval_95": [interval.low, interval.high], "seeds": interval.seeds,
            "users": interval.units, "verdict": interval.verdict}


def compare(result: dict[str, Any]) -> dict[str, Any]:
    """Sparse minus dense test GAUC (`paired`), and whether its interval lies within +-MARGIN."""
    figures = paired(result["records"]["sparse"], result["records"]["dense"])
    low, high = figures["interval_95"]
    return {**figures, "within_margin": low > -MARGIN and high < MARGIN}


def render(result: dict[str, Any], command: str) -> str:
    from models.statistics import RULE

    figures = compare(result)
    w = result["world"]
    lines = [
        "# DIN with sparse embedding tables (lazy Adam) against dense ones (Adam): test GAUC", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({result['wall_seconds']:.0f} s wall for this invocation, runs found in the cache taking none; each run's "
        f"own training time is in the table; torch on {result['threads']} threads). "
        f"World: the regulariser study's long tail (models/ctr/study.py) drawn with seed {w['seed']}, which only "
        f"this study and the regulariser sweep use: {w['n_items']:,} items with Zipf({w['item_zipf']}) exposure in "
        f"{w['n_categories']} categories, "
        f"{w['n_users']:,} users, {result['test_users']:,} of them test users, scored here and in "
        "reports/ctr_regulariser_sweep.md only (nothing is chosen on them in either). Model and training: "
        "the study's DIN (PReLU) with MBA (eq. 4) at its strength, early stopping on validation GAUC (the epoch is "
        f"chosen on validation); the two arms share every training seed (0-{result['seeds'] - 1}) and differ only in "
        "the embedding tables' gradients and optimizer.", "",
        "| arm | test GAUC per seed | mean | valid GAUC (mean) | epochs run | train s (mean) |",
        "|---|---|---|---|---|---|"]
    for name, label in LABELS.items():
        records = result["records"][name]
        gauc = [r["test"]["gauc"] for r in records]
        lines.append(f"| {label} | {', '.join(f'{g:.4f}' for g in gauc)} | {statistics.mean(gauc):.4f} | "
                     f"{statistics.mean(r['metrics']['valid_gauc'] for r in records):.4f} | "
                     f"{', '.join(str(r['metrics']['epochs_run']) for r in records)} | "
                     f"{statistics.mean(r['metrics']['train_seconds'] for r in records):.0f} |")
    low, high = figures["interval_95"]
    lines += ["", f"Sparse minus dense, test GAUC ({RULE}): **{figures['estimate']:+.4f} [{low:+.4f}, {high:+.4f}]** "
              f"over {figures['seeds']} seeds x {figures['users']:,} users: {figures['verdict']}. "
              + (f"The interval lies within +-{MARGIN} (below DIN's gain over its BaseModel in "
                 "reports/ctr_quality.md, +0.0083): in this setting lazy Adam trains DIN as well as Adam, to that "
                 "margin." if figures["within_margin"] else
                 f"The interval reaches past +-{MARGIN} (below DIN's gain over its BaseModel in "
                 "reports/ctr_quality.md, +0.0083): equivalence at that margin is not shown."), ""]
    return "\n".join(lines)


def run_study(parser: argparse.ArgumentParser, seeds: int, report: str, measure: Any, render: Any,
              argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The command line both long-tail studies share (this one and benchmarks/ctr/regulariser_sweep.py), on the
    caller's `parser` (its prog names the module): train (or read from the shared run cache) with `measure`, write
    `render`'s report -> (arguments, result)."""
    parser.add_argument("--seeds", type=int, default=seeds, help="training seeds (every arm trains with each)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--runs", type=Path, default=ROOT / "artifacts" / "ctr_sparse_quality",
                        help="trained runs are cached here, shared by both studies (an interrupted one resumes)")
    parser.add_argument("--quick", action="store_true", help="the study's tiny world, 2 epochs: seconds")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / report)
    args = parser.parse_args(argv)
    result = measure(args.seeds, args.threads, args.runs, args.quick)
    result["command"] = f"{parser.prog} {shlex.join(argv if argv is not None else sys.argv[1:])}".strip()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(result, result["command"]))
    return args, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ctr.sparse_quality",
                                     description=(__doc__ or "").split("\n\n")[0])
    args, result = run_study(parser, 8, "ctr_sparse_quality.md", measure, render, argv)
    saved = {**result, "comparison": compare(result),  # the per-user AUCs stay in the run cache, not the report
             "records": {name: [{k: v for k, v in r.items() if k != "test"} | {"test_gauc": r["test"]["gauc"]}
                                for r in records] for name, records in result["records"].items()}}
    args.report.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    print(args.report.read_text())


if __name__ == "__main__":
    main()
