"""`make quantize-report`: runs every recipe on every family present, writes the quantized models
into the repository (`<graph>-<recipe>`, FAILED ones marked and never chosen), points the family
alias (aliases.json) at the fastest model that passes its quality gate, and writes
reports/quantization.md + .json + plots. Latency is measured side by side, interleaved in rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from benchmarks.serving.machine import Window, all_cores, take_sample
from exporters import families as family_parts
from exporters.quantize.family import QuantFamily, RecipeRefused
from exporters.quantize.inspect import kernel_summary, scheme_facts
from exporters.quantize.recipes import ABLATION_RECIPES, RECIPES
from exporters.quantize.render import plot, render
from exporters.quantize.schemes import SCHEMES
from exporters.repository import set_default_alias, write_variant
from infersuite.services.families import family_names

log = logging.getLogger(__name__)
ALL_RECIPES = {**RECIPES, **ABLATION_RECIPES}
BATCHES = (1, 32)
# A recipe replaces fp32 as the default only when clearly faster in EVERY round of the run (the speed-up
# of each round's medians): repeated runs of this report on the shared 2-core machine moved the same
# recipe's batch-32 speed-up by up to +-0.3, and a rule on the pooled median alone flipped the default
# between recipes from one run to the next.
MIN_DEFAULT_SPEEDUP = 1.25
# Rounds of 20 runs moved ctr's int8-dynamic speed-up over 0.91-1.78x within one quiet run: 100 per round.
LATENCY_ROUNDS = 5
# The TensorRT accelerator's precision per recipe; recipes TensorRT cannot build (dynamic int8, int4
# MatMulNBits, per-tensor asymmetric QDQ) run on the CUDA execution provider instead.
TENSORRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8-static-perchannel": "INT8", "int8-qat": None,
                      "int8-static-minmax": None, "int8-dynamic": None, "int4-weight-only": None, "mixed": None}


def run_recipe(family: QuantFamily, recipe: str, work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"family": family.family, "recipe": recipe}
    outputs: dict[str, Path] = {}
    notes: list[str] = []
    try:
        for graph, src in family.graphs().items():
            out = work / f"{graph}-{recipe}.onnx"
            with contextlib.chdir(work):  # the toolchains leave temporary files in the working directory
                notes += ALL_RECIPES[recipe](src, out, family, graph).notes
            outputs[graph] = out
        row.update(kernels={g: kernel_summary(p) for g, p in outputs.items()}, quality=family.evaluate(outputs))
    except RecipeRefused as exc:
        return {**row, "status": "refused", "notes": [str(exc)]}
    except Exception as exc:  # a toolchain failure is a measured outcome too: reported, not fatal
        log.warning("%s failed on %s: %s", recipe, family.family, exc)
        return {**row, "status": "refused", "notes": [f"toolchain error: {str(exc).splitlines()[0][:200]}"]}
    if recipe in SCHEMES:
        row["qdq"] = scheme_facts(list(outputs.values()))
    row.update(status="ok", notes=notes, paths={g: str(p) for g, p in outputs.items()},
               size_bytes=sum(p.stat().st_size for p in outputs.values()))
    return row


def _session(path: str, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def measure_latency(family: QuantFamily, rows: list[dict[str, Any]], rounds: int = LATENCY_ROUNDS, runs: int = 100,
                    threads: int = 0, round_budget_s: float = 0.5) -> None:
    """p50 per recipe and batch size, and each round's own p50 (`latency_ms_rounds`); recipes interleaved
    within each round so drift hits all alike. Each recipe runs `runs` times per batch size and round, fewer
    (at least 5) where the slowest recipe's warm-up run says that would take over `round_budget_s`."""
    live = [r for r in rows if r["status"] == "ok"]
    sessions = {(r["recipe"], g): _session(p, threads) for r in live for g, p in r["paths"].items()}
    feeds = {(g, b): family.latency_inputs(g, b) for g in family.graphs() for b in BATCHES}
    samples: dict[tuple[str, int], list[float]] = {(r["recipe"], b): [] for r in live for b in BATCHES}

    def once(r: dict[str, Any], b: int) -> float:
        start = time.perf_counter()
        for g in r["paths"]:
            sessions[(r["recipe"], g)].run(None, feeds[(g, b)])
        return time.perf_counter() - start

    slowest = {b: max((once(r, b) for r in live), default=0.0) for b in BATCHES}  # also the warm-up
    count = {b: max(5, min(runs, int(round_budget_s / max(slowest[b], 1e-6)))) for b in BATCHES}
    for _ in range(rounds):
        for r in live:
            for b in BATCHES:
                samples[(r["recipe"], b)] += [once(r, b) for _ in range(count[b])]
    for r in live:
        r["latency_ms"] = {str(b): float(np.median(samples[(r["recipe"], b)]) * 1000) for b in BATCHES}
        r["latency_ms_rounds"] = {str(b): [float(np.median(part)) * 1000
                                           for part in np.array_split(np.asarray(samples[(r["recipe"], b)]), rounds)]
                                  for b in BATCHES}


def quality_gate(rows: list[dict[str, Any]], family: QuantFamily) -> None:
    """The gate itself: each measured recipe's relative quality loss vs the fp32 row and whether it is
    within the family's `max_relative_loss`. The default world (`gate`) and a model trained on a user's
    own data (exporters/ctr_user_quant.py) are judged by this one rule."""
    base = next(r for r in rows if r["recipe"] == "fp32")
    for r in rows:
        if r["status"] != "ok":
            continue
        r["relative_loss"] = (base["quality"] - r["quality"]) / abs(base["quality"])
        r["passed"] = bool(r["relative_loss"] <= family.max_relative_loss)


def gate(rows: list[dict[str, Any]], family: QuantFamily) -> None:
    """`quality_gate`, plus each recipe's speed-up and size ratio vs fp32 (rows measured by `measure_latency`)."""
    quality_gate(rows, family)
    base = next(r for r in rows if r["recipe"] == "fp32")
    for r in rows:
        if r["status"] != "ok":
            continue
        r["speedup"] = {b: base["latency_ms"][b] / r["latency_ms"][b] for b in r["latency_ms"]}
        if "latency_ms_rounds" in r:  # paired by round: fp32's median and this recipe's, measured side by side
            r["speedup_rounds"] = {b: [f / m for f, m in zip(base["latency_ms_rounds"][b], mine, strict=True)]
                                   for b, mine in r["latency_ms_rounds"].items()}
        r["size_ratio"] = base["size_bytes"] / r["size_bytes"]


def publish(family: QuantFamily, rows: list[dict[str, Any]], repository: Path) -> str:
    """Writes every measured model into the repository; returns the family default's name.

    Staged families (segmentation) are written but their service keeps its configured stages:
    the aliases name each graph's default, which a staged service would have to follow per stage."""
    for r in rows:
        if r["status"] != "ok" or r["recipe"] in ABLATION_RECIPES:  # ablations are studies, never published
            continue
        for graph, path in r["paths"].items():
            meta = {"recipe": r["recipe"], "quality": {family.metric: r["quality"]},
                    "relative_quality_loss": r["relative_loss"], "quality_gate": "passed" if r["passed"] else "FAILED",
                    "kernels": r["kernels"][graph]["verdict"], "notes": r["notes"]}
            if graph == "segmentation-backbone":  # the stage list the service follows
                pipeline = dict(getattr(family, "pipeline", {}))
                pipeline["stages"] = {"backbone": f"segmentation-backbone-{r['recipe']}", "head":
                                      f"segmentation-head-{r['recipe']}", "encoder_layers": [
                                          f"segmentation-encoder{k}-{r['recipe']}"
                                          for k in range(1, len(pipeline.get("stages", {}).get("encoder_layers", []))
                                                         + 1)],
                                      **({"gate": f"segmentation-gate-{r['recipe']}"}
                                         if pipeline.get("stages", {}).get("gate") else {})}
                meta["pipeline"] = pipeline
            write_variant(repository, f"{graph}-fp32", f"{graph}-{r['recipe']}", Path(path), meta,
                          tensorrt_precision=TENSORRT_PRECISION.get(r["recipe"]))
    best = default_recipe(rows)
    for graph in family.graphs():
        set_default_alias(repository, graph, f"{graph}-{best}")
    return best


def slowest_round_speedup(r: dict[str, Any]) -> float:
    """A recipe's batch-32 speed-up over fp32 in its least favourable round (the pooled one for rows
    measured before rounds were kept)."""
    batch = str(BATCHES[-1])
    return float(min(r["speedup_rounds"][batch])) if "speedup_rounds" in r else float(r["speedup"][batch])


def default_recipe(rows: list[dict[str, Any]]) -> str:
    """The recipe the family alias serves: of those that passed the gate and are at least MIN_DEFAULT_SPEEDUP
    faster than fp32 at batch 32 in every round, the one whose slowest round is fastest; fp32 when none
    is (rows through `gate`)."""
    # fp16 is a GPU recipe: on the CPU provider it is never the default (see the report's latency).
    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    clear = [r for r in rows if r.get("passed") and r["recipe"] not in ABLATION_RECIPES
             and (r["recipe"] != "fp16" or gpu) and r["recipe"] != "fp32"
             and slowest_round_speedup(r) >= MIN_DEFAULT_SPEEDUP]
    if not clear:  # none clearly faster than fp32 in every round: keep the exact model
        return "fp32"
    return str(max(clear, key=slowest_round_speedup)["recipe"])


def families(repository: Path, artifacts: Path) -> list[QuantFamily]:
    """Each family's `quant_families` (exporters/<family>.py); the families it measures nothing of are named."""
    found, not_measured = family_parts.quant_families(repository, artifacts)
    for family, why in not_measured.items():
        print(f"quantization report: {family} not measured ({why})", file=sys.stderr)
    return found


def _section_order(section: dict[str, Any]) -> int:
    """Sections follow the service families' order ("audio-passt" belongs to audio); unknown ones go last."""
    names = family_names()
    family = next((n for n in names if section["family"] == n or section["family"].startswith(f"{n}-")), None)
    return names.index(family) if family else len(names)


def _stamp(argv: list[str] | None, threads: int) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return {"command": "python -m exporters.quantize.report " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": commit.stdout.strip() or "unknown", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "onnxruntime": ort.__version__, "threads": threads or f"onnxruntime default ({os.cpu_count()})",
            "utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": _load()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporters.quantize.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--recipes", nargs="+", default=list(ALL_RECIPES), choices=list(ALL_RECIPES),
                        help="recipes and single-factor ablations to run (default: all)")
    parser.add_argument("--families", nargs="+", default=None, help="only these families (e.g. ctr audio-passt)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per session (0: ORT's default)")
    parser.add_argument("--report", type=Path, default=Path("reports/quantization.md"))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other families of the existing report (each section carries its own stamp)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                        help="measure nothing: write the report from these reports' families (e.g. runs of "
                             "different families made at the same time), each section with its own stamp")
    parser.add_argument("--rerender", type=Path, default=None, metavar="JSON",
                        help="measure nothing: write --report again from a run's own .json (today's rendering)")
    return parser


def _write(results: dict[str, Any], report: Path, rerender: bool = False) -> None:
    """A re-render keeps the run's section order and its plot (same figures)."""
    if not rerender:
        results["families"].sort(key=_section_order)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render(results))
    report.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    if not rerender:
        plot(results, report.with_suffix(".png"))
    print(report.read_text())


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.rerender:
        rendered = json.loads(args.rerender.read_text())
        rendered["rerendered_by"] = "python -m exporters.quantize.report " + " ".join(
            argv if argv is not None else sys.argv[1:])
        return _write(rendered, args.report, rerender=True)
    if args.combine:
        found = {f["family"]: f for path in args.combine for f in json.loads(path.read_text())["families"]
                 if "stamp" in f}
        command = "python -m exporters.quantize.report " + " ".join(argv if argv is not None else sys.argv[1:])
        return _write({"families": list(found.values()), "combined_by": command}, args.report)
    stamp = _stamp(argv, args.threads)
    results: dict[str, Any] = {"families": []}
    recipes = ["fp32", *[r for r in args.recipes if r != "fp32"]]
    with tempfile.TemporaryDirectory() as tmp:
        # Absolute paths: the recipes run inside their work directory.
        for family in families(args.repository.resolve(), args.artifacts.resolve()):
            if args.families and family.family not in args.families:
                continue
            rows = [run_recipe(family, recipe, Path(tmp)) for recipe in tqdm(recipes, desc=family.family)]
            first = take_sample(os.getpid())
            measure_latency(family, rows, threads=args.threads)
            cores = all_cores(Window(first, take_sample(os.getpid())))
            gate(rows, family)
            default = publish(family, rows, args.repository)
            for r in rows:
                r.pop("paths", None)
            results["families"].append({"family": family.family, "metric": family.metric, "rows": rows,
                                        "max_relative_loss": family.max_relative_loss, "default": default,
                                        "stamp": {**stamp, "load_after": _load(), "cores_during_latency": cores}})
    if not results["families"]:
        raise SystemExit(f"no family to quantize in {args.repository} (run `make models` first)")
    if args.merge and args.report.with_suffix(".json").is_file():
        done = {f["family"] for f in results["families"]}
        previous = json.loads(args.report.with_suffix(".json").read_text())["families"]
        results["families"] += [f for f in previous if f["family"] not in done and "stamp" in f]
    _write(results, args.report)


if __name__ == "__main__":
    main()
