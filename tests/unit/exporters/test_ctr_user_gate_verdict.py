"""The user-data quantization gate's verdict per recipe (exporters/ctr_user_quant.py) and its refusal of a
checkpoint whose training did not finish; the gate rule itself is `make quantize-report`'s `quality_gate`."""

from __future__ import annotations

import pytest

from exporters.ctr_user_quant import UnfinishedTraining, render_gate, require_finished, verdict
from exporters.quantize.report import quality_gate


class _Family:
    max_relative_loss = 0.01


def _gated(*qualities: float) -> list[dict]:
    rows = [{"recipe": name, "status": "ok", "quality": q, "notes": []}
            for name, q in zip(["fp32", "near", "far"], qualities, strict=False)]
    rows.append({"recipe": "int4-weight-only", "status": "refused", "notes": ["toolchain error: no Gather"]})
    quality_gate(rows, _Family())
    return rows


def test_a_recipe_passes_within_the_relative_tolerance_and_fails_beyond_it() -> None:
    fp32 = {"gauc": 0.80, "auc": 0.75}
    rows = _gated(0.80, 0.7925, 0.7900)  # losses 0.94% and 1.25%
    near = verdict(rows[1], fp32, {"gauc": 0.7925, "auc": 0.7480}, 0.01)
    assert near["verdict"] == "passed" and "reason" not in near
    assert near["gauc_difference"] == pytest.approx(-0.0075) and near["auc_difference"] == pytest.approx(-0.002)
    far = verdict(rows[2], fp32, {"gauc": 0.7900, "auc": 0.7400}, 0.01)
    assert far["verdict"] == "failed"
    assert far["reason"] == "test GAUC 0.7900 vs fp32 0.8000: relative loss 1.25% over the 1.0% tolerance"
    refused = verdict(rows[3], fp32, None, 0.01)
    assert refused == {"recipe": "int4-weight-only", "tolerance_relative_gauc_loss": 0.01, "verdict": "refused",
                       "reason": "toolchain error: no Gather"}


def test_a_better_quantized_gauc_passes() -> None:
    rows = _gated(0.80, 0.81)
    assert verdict(rows[1], {"gauc": 0.8, "auc": 0.7}, {"gauc": 0.81, "auc": 0.7}, 0.01)["verdict"] == "passed"


def test_the_report_names_each_failure_and_refusal() -> None:
    fp32 = {"gauc": 0.80, "auc": 0.75}
    rows = _gated(0.80, 0.7925, 0.7900)
    result = {"tolerance_relative_gauc_loss": 0.01, "fp32": fp32, "default": "din-fp32",
              "recipes": [verdict(rows[1], fp32, {"gauc": 0.7925, "auc": 0.748}, 0.01) | {"exported": "din-near"},
                          verdict(rows[2], fp32, {"gauc": 0.79, "auc": 0.74}, 0.01),
                          verdict(rows[3], fp32, None, 0.01)]}
    text = render_gate(result)
    assert "| near | 0.7925 | -0.0075 | 0.7480 | -0.0020 | +0.94% (<= 1.0%) | passed | din-near |" in text
    assert "| far | 0.7900 | -0.0100 | 0.7400 | -0.0100 | +1.25% (<= 1.0%) | failed | no |" in text
    assert "- far: test GAUC 0.7900 vs fp32 0.8000: relative loss 1.25% over the 1.0% tolerance" in text
    assert "- int4-weight-only: toolchain error: no Gather" in text
    assert render_gate(None, "--no-quantize").endswith("Not run: --no-quantize.\n")


@pytest.mark.parametrize(("metrics", "missing"), [
    ({"valid_gauc": 0.7, "best_epoch": 1}, "epochs_run, test_gauc, test_auc"),
    ({}, "epochs_run, best_epoch, test_gauc, test_auc"),
])
def test_an_unfinished_training_is_refused(metrics: dict, missing: str) -> None:
    with pytest.raises(UnfinishedTraining, match=f"the checkpoint lacks {missing}"):
        require_finished(metrics)
    with pytest.raises(UnfinishedTraining, match="ran no epoch"):
        require_finished({"epochs_run": 0, "best_epoch": 0, "test_gauc": 0.5, "test_auc": 0.5})
    require_finished({"epochs_run": 2, "best_epoch": 1, "test_gauc": 0.7, "test_auc": 0.7})


def test_a_rerun_removes_the_previous_run_s_variants_of_din_fp32_only(tmp_path) -> None:
    import json

    from exporters.ctr_user_quant import remove_variants

    for model, source in (("din-fp32", None), ("din-int8-dynamic", "din-fp32"), ("din-mixed", "din-fp32"),
                          ("din-custom", "din-other")):
        for version in ("1", "2"):
            (tmp_path / model / version).mkdir(parents=True)
            (tmp_path / model / version / "meta.json").write_text(json.dumps({"source_model": source}))
    assert remove_variants(tmp_path) == ["din-int8-dynamic", "din-mixed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["din-custom", "din-fp32"]
