"""L2 and MBA at their best strengths, each chosen on validation: the comparison reports/ctr_quality.md could
not make (it compared them at one matched, untuned strength).

DIN (PReLU) on the regulariser study's long tail (models/ctr/study.py: 50,000 items with Zipf(1) exposure),
drawn with the fresh world seed of benchmarks/ctr/sparse_quality.py, with no regularisation, L2 on every
embedding row at three strengths and MBA (eq. 4) at three strengths, each with the same training seeds and
early stopping on validation GAUC. For each regulariser the strength with the highest mean validation GAUC
over the seeds is kept; the test users are read only to score the kept strengths (and the whole curve, shown
for context). Comparisons: a hierarchical bootstrap over training seeds x test users (models/statistics.py).

    python -m benchmarks.ctr.regulariser_sweep [--seeds 5]    # make report-ctr-regulariser-sweep
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.ctr.sparse_quality import WORLD_SEED, paired, run_study

L2_STRENGTHS = (5e-5, 5e-4, 5e-3)  # the study's 5e-4 in the middle
MBA_STRENGTHS = (0.005, 0.05, 0.5)  # the study's 0.05 (TrainConfig.mba_lambda) in the middle


def runs() -> dict[str, dict[float, Any]]:
    """{"none": {0: run}, "l2": {strength: run}, "mba": {strength: run}}; the study's own runs where the
    strength is the study's (so their cached results are shared)."""
    from models.ctr.study import L2_LAMBDA, PARTS

    study = {run.name: run for run in PARTS["reg"]}
    l2 = {s: study["reg_l2"] if s == L2_LAMBDA else replace(study["reg_l2"], name=f"reg_l2_{s:g}",
                                                              train={**study["reg_l2"].train, "l2_lambda": s})
          for s in L2_STRENGTHS}
    mba = {s: study["reg_mba"] if s == 0.05 else replace(study["reg_mba"], name=f"reg_mba_{s:g}",
                                                           train={**study["reg_mba"].train, "mba_lambda": s})
           for s in MBA_STRENGTHS}
    return {"none": {0.0: study["reg_none"]}, "l2": l2, "mba": mba}


def measure(seeds: int, threads: int, out: Path, quick: bool = False) -> dict[str, Any]:
    import torch

    from models.ctr.data import make_click_data
    from models.ctr.study import run_once, world

    torch.set_num_threads(threads)
    config = replace(world("reg", quick), seed=WORLD_SEED)
    data = make_click_data(config)
    started = time.perf_counter()
    records: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for seed in range(seeds):
        for kind, by_strength in runs().items():
            for strength, run in by_strength.items():
                got = run_once(run, seed, data, out, quick)
                records.setdefault(kind, {}).setdefault(f"{strength:g}", []).extend(got)
                print(f"{kind} {strength:g} seed {seed}: valid GAUC {got[-1]['metrics']['valid_gauc']:.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    return {"world": asdict(config), "seeds": seeds, "threads": threads, "test_users": len(data.test_users),
            "records": records, "wall_seconds": time.perf_counter() - started}


def chosen(result: dict[str, Any], kind: str) -> str:
    """The strength of `kind` with the highest mean validation GAUC over the seeds (a tie: the weaker)."""
    by_strength = result["records"][kind]
    return max(by_strength, key=lambda s: (statistics.mean(r["metrics"]["valid_gauc"] for r in by_strength[s]),
                                           -float(s)))


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    picks = {kind: chosen(result, kind) for kind in result["records"]}
    arm = {kind: result["records"][kind][picks[kind]] for kind in picks}
    return {"chosen": picks, "comparisons": {
        "l2 - none": paired(arm["l2"], arm["none"]), "mba - none": paired(arm["mba"], arm["none"]),
        "mba - l2": paired(arm["mba"], arm["l2"])}}


def render(result: dict[str, Any], command: str) -> str:
    from models.statistics import RULE

    figures = analyse(result)
    w = result["world"]
    names = {"none": "no regularisation", "l2": "L2 on every embedding row", "mba": "MBA (eq. 4)"}
    lines = [
        "# DIN regularisers at their validation-chosen strengths", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({result['wall_seconds']:.0f} s wall for this invocation, runs found in the cache taking none; torch on "
        f"{result['threads']} threads). World: the regulariser study's long tail (models/ctr/study.py) drawn with seed "
        f"{w['seed']}, as in reports/ctr_sparse_quality.md (whose dense MBA runs are these MBA 0.05 runs) and no other "
        f"study: {w['n_items']:,} items with Zipf({w['item_zipf']}) exposure, {w['n_users']:,} users, "
        f"{result['test_users']:,} test users. DIN (PReLU), the study's training (early stopping on validation GAUC); "
        f"training seeds 0-{result['seeds'] - 1}, shared by every arm. Chosen on validation only: each regulariser's "
        "strength (highest mean validation GAUC over the seeds). The test columns of the strengths not chosen are "
        "context, not a choice.", "",
        "| regulariser | strength | valid GAUC (mean over seeds) | test GAUC (mean +- sd) | epochs run (mean) "
        "| chosen |",
        "|---|---|---|---|---|---|"]
    for kind, by_strength in result["records"].items():
        for strength, records in by_strength.items():
            valid = statistics.mean(r["metrics"]["valid_gauc"] for r in records)
            test = [r["test"]["gauc"] for r in records]
            spread = statistics.stdev(test) if len(test) > 1 else 0.0
            lines.append(f"| {names[kind]} | {strength if kind != 'none' else '-'} | {valid:.4f} | "
                         f"{statistics.mean(test):.4f} +- {spread:.4f} | "
                         f"{statistics.mean(r['metrics']['epochs_run'] for r in records):.1f} | "
                         f"{'yes' if figures['chosen'][kind] == strength else ''} |")
    edges = [names[kind] for kind in ("l2", "mba") if figures["chosen"][kind] in
             (next(iter(result["records"][kind])), list(result["records"][kind])[-1])]
    if edges:
        lines += ["", f"At the edge of its grid: {', '.join(edges)}; its best strength may lie beyond the grid."]
    lines += ["", f"Test GAUC differences at the chosen strengths ({RULE}):", "",
              "| A - B | difference | 95% interval | seeds x users | verdict |", "|---|---|---|---|---|"]
    for pair, c in figures["comparisons"].items():
        a, b = pair.split(" - ")
        label = f"{names[a]} ({figures['chosen'][a]}) - {names[b]}" + (
            f" ({figures['chosen'][b]})" if b != "none" else "")
        lines.append(f"| {label} | {c['estimate']:+.4f} | [{c['interval_95'][0]:+.4f}, {c['interval_95'][1]:+.4f}] | "
                     f"{c['seeds']} x {c['users']:,} | {c['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ctr.regulariser_sweep",
                                     description=(__doc__ or "").split("\n\n")[0])
    args, result = run_study(parser, 5, "ctr_regulariser_sweep.md", measure, render, argv)
    saved = {**result, **analyse(result),  # the per-user AUCs stay in the run cache, not the report
             "records": {kind: {s: [{"seed": r["seed"], "metrics": r["metrics"], "test_gauc": r["test"]["gauc"]}
                                    for r in records] for s, records in by.items()}
                         for kind, by in result["records"].items()}}
    args.report.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    print(args.report.read_text())


if __name__ == "__main__":
    main()
