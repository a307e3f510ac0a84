"""reports/quantization.md and .png from the measured rows (exporters/quantize/report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exporters.quantize.schemes import ABLATIONS

COLUMNS = ("| recipe | quality | rel. loss | gate | size KB | x smaller | p50 ms b=1 | p50 ms b=32 | speed-up b=32 "
           "| speed-up b=32 over rounds | kernels |", "|---|---|---|---|---|---|---|---|---|---|---|")
ABLATION_COLUMNS = ("| ablation | factor changed | vs | quality | change vs reference | rel. loss vs fp32 | gate "
                    "| speed b=32 vs reference | weight scales/tensor | weight zero points | activation zero points "
                    "| act. scale / reference (median) | kernels |", "|---" * 13 + "|")


def kernels_cell(r: dict[str, Any]) -> str:
    """One cell per recipe: the verdicts and integer ops, identical stages merged (staged families)."""
    cells = [k["verdict"] + (f" ({', '.join(f'{o}x{n}' for o, n in k['integer_ops'].items())})"
                             if k["integer_ops"] else "") for k in r["kernels"].values()]
    unique = list(dict.fromkeys(cells))
    return "; ".join(f"{c} [x{cells.count(c)} graphs]" if len(cells) > 1 else c for c in unique)


def _recipe_row(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"| {r['recipe']} | refused: {r['notes'][0]} | | | | | | | | | |"
    return (f"| {r['recipe']} | {r['quality']:.4f} | {r['relative_loss']:+.2%} | "
            f"{'passed' if r['passed'] else 'FAILED'} | {r['size_bytes'] / 1024:.0f} | {r['size_ratio']:.2f} | "
            f"{r['latency_ms']['1']:.3f} | {r['latency_ms']['32']:.3f} | {r['speedup']['32']:.2f}x | "
            f"{_rounds(r)} | {kernels_cell(r)} |")


def _rounds(r: dict[str, Any]) -> str:
    """The batch-32 speed-up's range over the run's rounds (each round's medians, side by side)."""
    rounds = r.get("speedup_rounds", {}).get("32")
    return f"{min(rounds):.2f}-{max(rounds):.2f}x" if rounds else "not kept"


def _scale_ratio(r: dict[str, Any], ref: dict[str, Any]) -> str:
    mine, theirs = r["qdq"]["activation_scales"], ref["qdq"]["activation_scales"]
    if len(mine) != len(theirs) or not mine:
        return "-"
    return f"{float(np.median(np.asarray(mine) / np.maximum(np.asarray(theirs), 1e-30))):.3f}"


def _ablation_row(name: str, rows: dict[str, dict[str, Any]]) -> str:
    ablation, r = ABLATIONS[name], rows.get(name)
    ref = rows.get(ablation.reference)
    if r is None or ref is None or r["status"] != "ok" or ref["status"] != "ok":
        why = r["notes"][0] if r and r.get("notes") else "not run"
        return f"| {name} | {ablation.factor} | {ablation.reference} | {why} | | | | | | | | | |"
    change = (r["quality"] - ref["quality"]) / abs(ref["quality"])
    speed = ref["latency_ms"]["32"] / r["latency_ms"]["32"]
    return (f"| {name} | {ablation.factor} | {ablation.reference} | {r['quality']:.4f} | {change:+.2%} | "
            f"{r['relative_loss']:+.2%} | {'passed' if r['passed'] else 'FAILED'} | {speed:.2f}x | "
            f"{r['qdq']['max_weight_scales']} | {r['qdq']['weight_zero_points']} | "
            f"{r['qdq']['activation_zero_points']} | {_scale_ratio(r, ref)} | {kernels_cell(r)} |")


ENTROPY_NOTE = ("abl-entropy is onnxruntime's entropy (KL) calibrator as this scheme uses it, not entropy calibration "
                "as TensorRT defines it: onnxruntime builds each histogram on [-max|x|, +max|x|] and returns a "
                "symmetric threshold range (-T, +T), here over 512 bins searched for 128 quantized bins, and that "
                "range is then used with the base scheme's asymmetric uint8 activations, so a FAILED abl-entropy "
                "row says that this pairing fails, not that the method does. abl-entropy-tensorrt is TensorRT's "
                "procedure (symmetric int8 activations, a 2,048-bin histogram of |x|, the KL search over every cut "
                "from 128 bins up, 64 calibration batches) against int8-static-perchannel, which differs from it "
                "only in its calibration (99.99th percentile).")


def _cores(stamp: dict[str, Any]) -> str:
    """All cores during the latency runs (/proc/stat), where the run recorded them."""
    cores = stamp.get("cores_during_latency")
    if cores is None:
        return "; core idle time not recorded"
    offenders = f" ({', '.join(cores['offenders'])})" if cores["offenders"] else ""
    return (f"; all cores during the latency runs (/proc/stat): idle {cores['idle_share']:.0%}, foreign work "
            f"{cores['foreign_share']:.1%}{offenders}")


def _family(fam: dict[str, Any]) -> list[str]:
    rows = {r["recipe"]: r for r in fam["rows"]}
    st = fam["stamp"]
    lines = [f"## {fam['family']} ({fam['metric']}; gate: relative loss <= {fam['max_relative_loss']:.1%}; "
             f"default: `{fam['default']}`)", "",
             f"Measured by `{st['command']}` at commit {st['commit']}, {st['utc']}; intra-op threads {st['threads']}; "
             f"load average before / after: {st['load_before']} / {st['load_after']}{_cores(st)}.", "", *COLUMNS]
    lines += [_recipe_row(r) for r in fam["rows"] if r["recipe"] not in ABLATIONS]
    if any(name in rows for name in ABLATIONS):
        lines += ["", f"Single-factor ablations ({fam['family']}): each row differs from its reference in exactly "
                  "the factor named (checked on the produced graphs: the last columns are read from them).", "",
                  *ABLATION_COLUMNS, *[_ablation_row(name, rows) for name in ABLATIONS if name in rows]]
        if "abl-entropy" in rows:
            lines += ["", ENTROPY_NOTE]
    notes = [f"- {r['recipe']}: {'; '.join(dict.fromkeys(r['notes']))}" for r in fam["rows"]
             if r["notes"] and r["recipe"] not in ABLATIONS]
    return [*lines, "", "Notes:", *notes, ""]


def render(results: dict[str, Any]) -> str:
    stamp = results["families"][0]["stamp"]
    lines = ["# Quantization recipes: quality, size, CPU latency, kernels", "",
             "Command: `make quantize-report` (`python -m exporters.quantize.report`; each family's section names "
             f"the exact command, commit and load average it was measured under). Machine: {stamp['machine']}, "
             f"onnxruntime {stamp['onnxruntime']} CPUExecutionProvider, 2 cores shared with other work. Latency: "
             "p50 of interleaved rounds in one run, all recipes of a family side by side; "
             "ratios are the figures to read, absolute milliseconds move with the load; the speed-up's range over "
             "the rounds (each round's medians) shows how far one run moves it. Default: a recipe that passed the "
             "gate and was at least 1.25x faster than fp32 at batch 32 in every round, the one whose slowest round "
             "was fastest; fp32 when none was (sections measured before the rounds were kept: the pooled speed-up). "
             "Quality gate: relative "
             "loss of the family's metric vs fp32. Quality figures are deterministic for one checkpoint, one "
             "calibration set and one test set: no seeds and no interval on these differences. The same recipes at "
             "production shapes: reports/quantization_production.md (`make bench-quantization`)."
             + (f" Sections measured by separate runs, combined by `{results['combined_by']}`."
                if "combined_by" in results else "")
             + (f" Re-rendered from its .json by `{results['rerendered_by']}`: nothing re-measured."
                if "rerendered_by" in results else ""), ""]
    for fam in results["families"]:
        lines += _family(fam)
    return "\n".join(lines)


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for fam in results["families"]:
        ok = [r for r in fam["rows"] if r["status"] == "ok"]
        for r in ok:
            left.scatter(r["speedup"]["32"], -100 * r["relative_loss"], marker="o" if r["passed"] else "x")
            left.annotate(f"{fam['family']}:{r['recipe']}", (r["speedup"]["32"], -100 * r["relative_loss"]),
                          fontsize=6)
        right.bar([f"{fam['family']}:{r['recipe']}" for r in ok], [r["size_ratio"] for r in ok])
    left.set_xlabel("CPU speed-up vs fp32 at batch 32 (same run)")
    left.set_ylabel("quality change vs fp32 (%)")
    left.set_title("quality vs speed-up (x = failed gate)")
    right.set_ylabel("x smaller than fp32")
    right.tick_params(axis="x", rotation=80, labelsize=5)
    right.set_title("size reduction per recipe")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
