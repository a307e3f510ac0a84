"""The quantization gate on a DIN trained on a user's own data (`python -m models.ctr.train --data`).

The same recipes, gate and default rule as `make quantize-report` (exporters/quantize/report.py:
`run_recipe`, `measure_latency`, `gate`, `default_recipe`), with the user's data in place of the
synthetic world: calibration batches come from the user's validation split, the quality every recipe is
judged by is its GAUC on the user's test split. Unlike the default world's report, a recipe that fails
(or that its toolchain refuses) is not written into the repository at all; the run's quality report says
why. Every model written gets meta.json through `write_variant` and a manifest.json as `exporters.ship`
records it; din-fp32's meta.json carries every recipe's verdict.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from exporters.ctr_quant import CtrQuantization
from exporters.quantize.recipes import RECIPES
from exporters.quantize.report import (
    MIN_DEFAULT_SPEEDUP,
    TENSORRT_PRECISION,
    default_recipe,
    gate,
    measure_latency,
    run_recipe,
)
from exporters.repository import record_quantization_gate, set_default_alias, write_variant
from exporters.ship import write_manifests
from models.ctr.data import ClickData

SOURCE = "din-fp32"


class UnfinishedTraining(Exception):
    """The checkpoint did not come out of a finished training run: nothing is exported from it."""


def require_finished(metrics: dict[str, Any]) -> None:
    """Refuses a checkpoint whose training did not finish: `train_variant` writes `epochs_run` and the
    test figures only after its last epoch and the reload of the best one."""
    missing = [k for k in ("epochs_run", "best_epoch", "test_gauc", "test_auc") if k not in metrics]
    if missing:
        raise UnfinishedTraining(f"training did not finish (the checkpoint lacks {', '.join(missing)}): "
                                 "nothing is exported or quantized; train again to the end")
    if int(metrics["epochs_run"]) < 1:
        raise UnfinishedTraining("training ran no epoch: nothing is exported or quantized")


def remove_variants(repository: Path) -> list[str]:
    """Deletes the din-<recipe> models made from din-fp32 by an earlier run (their gate judged another
    din-fp32) -> their names. Models of other sources stay."""
    removed = []
    for meta_path in sorted(repository.glob("din-*/*/meta.json")):
        model = meta_path.parent.parent
        if model.name == SOURCE or not model.is_dir():  # a model with several versions is seen once per version
            continue
        if json.loads(meta_path.read_text()).get("source_model") == SOURCE:
            shutil.rmtree(model)
            removed.append(model.name)
    return removed


def verdict(row: dict[str, Any], fp32: dict[str, float], test: dict[str, float] | None,
            tolerance: float) -> dict[str, Any]:
    """One recipe's line of the report from its gated row (`quality_gate`): passed, failed (its GAUC loss
    over the tolerance) or refused (by its toolchain), with the GAUC/AUC differences against fp32."""
    out: dict[str, Any] = {"recipe": row["recipe"], "tolerance_relative_gauc_loss": tolerance}
    if row["status"] != "ok":
        return {**out, "verdict": "refused", "reason": "; ".join(row.get("notes", [])) or "refused by its toolchain"}
    test = test or {"gauc": row["quality"], "auc": float("nan")}
    out.update(test_gauc=test["gauc"], test_auc=test["auc"], gauc_difference=test["gauc"] - fp32["gauc"],
               auc_difference=test["auc"] - fp32["auc"], relative_gauc_loss=row["relative_loss"])
    if row["passed"]:
        return {**out, "verdict": "passed"}
    return {**out, "verdict": "failed", "reason": f"test GAUC {test['gauc']:.4f} vs fp32 {fp32['gauc']:.4f}: "
                                                 f"relative loss {row['relative_loss']:.2%} over the "
                                                 f"{tolerance:.1%} tolerance"}


def quantize_user_model(checkpoint: Path, repository: Path, data: ClickData, command: str,
                        recipes: list[str] | None = None, beside_model: tuple[str, ...] = ()) -> dict[str, Any]:
    """Runs `recipes` (default: every deployable one) on <repository>/din-fp32 judged on `data`'s test split,
    writes the passing ones as din-<recipe> beside it (with din-fp32's `beside_model` files, e.g. Amazon's
    string_ids.json), points the `din` alias at the gate's default and returns {"metric",
    "tolerance_relative_gauc_loss", "default", "fp32", "recipes": [verdict, ...]}."""
    family = CtrQuantization(checkpoint, repository, name=SOURCE, data=data)
    require_finished(family.checkpoint_metrics)
    names = ["fp32", *[r for r in (recipes if recipes is not None else list(RECIPES)) if r != "fp32"]]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_recipe(family, recipe, Path(tmp)) for recipe in names]
        measure_latency(family, rows)
        gate(rows, family)
        fp32 = family.test_reports[rows[0]["paths"]["din"]]
        verdicts = [verdict(r, fp32, family.test_reports.get(r.get("paths", {}).get("din", "")),
                            family.max_relative_loss) for r in rows]
        for row, line in zip(rows, verdicts, strict=True):
            if row["recipe"] != "fp32" and line["verdict"] == "passed":
                line["exported"] = _export(repository, row, line)
                for name in beside_model:
                    shutil.copyfile(repository / SOURCE / "1" / name, repository / line["exported"] / "1" / name)
    default = default_recipe(rows)
    set_default_alias(repository, "din", f"din-{default}")
    result: dict[str, Any] = {
        "metric": family.metric, "split": "your test split (calibration: your validation split)",
        "tolerance_relative_gauc_loss": family.max_relative_loss, "default": f"din-{default}",
        "recipes": [v for v in verdicts if v["recipe"] != "fp32"], "fp32": fp32}
    record_quantization_gate(repository / SOURCE / "1", {k: v for k, v in result.items() if k != "fp32"})
    write_manifests(repository, [SOURCE, *(v["exported"] for v in result["recipes"] if "exported" in v)], command)
    return result


def _export(repository: Path, row: dict[str, Any], line: dict[str, Any]) -> str:
    name = f"din-{row['recipe']}"
    meta = {"recipe": row["recipe"], "quality": {"test_gauc": line["test_gauc"], "test_auc": line["test_auc"]},
            "relative_quality_loss": row["relative_loss"], "quality_gate": "passed",
            "kernels": row["kernels"]["din"]["verdict"], "notes": row["notes"]}
    write_variant(repository, SOURCE, name, Path(row["paths"]["din"]), meta,
                  tensorrt_precision=TENSORRT_PRECISION.get(row["recipe"]))
    return name


def render_gate(result: dict[str, Any] | None, why_not: str = "") -> str:
    """The quality report's section: one row per recipe, the reason of each failure or refusal."""
    if result is None:
        return f"\n## Quantization gate\n\nNot run: {why_not}.\n"
    tolerance = result["tolerance_relative_gauc_loss"]
    lines = ["", "## Quantization gate", "",
             f"The recipes of `make quantize-report` on the exported DIN (Dice), calibrated on your validation "
             f"split and judged on your test split: a recipe passes when its test GAUC is at most "
             f"{tolerance:.1%} (relative) below fp32's ({result['fp32']['gauc']:.4f}; AUC "
             f"{result['fp32']['auc']:.4f}, onnxruntime). Passing recipes are exported as din-<recipe>; failed "
             f"or refused ones are not. The `din` alias serves {result['default']} (a passing recipe only when "
             f"at least {MIN_DEFAULT_SPEEDUP}x faster than fp32 at batch 32).", "",
             "| recipe | test GAUC | GAUC - fp32 | test AUC | AUC - fp32 | relative GAUC loss | verdict | exported |",
             "|---|---|---|---|---|---|---|---|"]
    for v in result["recipes"]:
        if v["verdict"] == "refused":
            lines.append(f"| {v['recipe']} | | | | | | refused | no |")
            continue
        lines.append(f"| {v['recipe']} | {v['test_gauc']:.4f} | {v['gauc_difference']:+.4f} | {v['test_auc']:.4f} | "
                     f"{v['auc_difference']:+.4f} | {v['relative_gauc_loss']:+.2%} (<= {tolerance:.1%}) | "
                     f"{v['verdict']} | {v.get('exported', 'no')} |")
    reasons = [f"- {v['recipe']}: {v['reason']}" for v in result["recipes"] if "reason" in v]
    return "\n".join([*lines, *(["", "Not exported:", "", *reasons] if reasons else [])]) + "\n"
