"""reports/quantization.md from a run's .json (`--rerender`): the header says it was re-rendered and by
which command, and every family with an entropy ablation says what that row tests (onnxruntime's symmetric
KL range on asymmetric uint8 activations), so a FAILED row is not read as entropy calibration failing."""

from __future__ import annotations

import json
from pathlib import Path

from exporters.quantize.render import ENTROPY_NOTE, render
from exporters.quantize.report import main

STAMP = {"command": "python -m exporters.quantize.report --families ctr", "commit": "abc", "utc": "now",
         "threads": 2, "machine": "x86_64, 2 cores", "onnxruntime": "1.31.1", "load_before": "1", "load_after": "2"}


def _row(recipe: str, quality: float) -> dict:
    return {"recipe": recipe, "status": "ok", "quality": quality, "relative_loss": (0.72 - quality) / 0.72,
            "passed": quality > 0.713, "size_bytes": 1024, "size_ratio": 1.0, "latency_ms": {"1": 1.0, "32": 10.0},
            "speedup": {"1": 1.0, "32": 1.0}, "notes": [], "kernels": {"g": {"verdict": "float", "integer_ops": {}}},
            "qdq": {"activation_scales": [1.0], "max_weight_scales": 1, "weight_zero_points": "uint8 {128}",
                    "activation_zero_points": "uint8 {3}"}}


def _results(*recipes: str) -> dict:
    rows = [_row(r, 0.72 if r == "fp32" else 0.71) for r in recipes]
    return {"families": [{"family": "ctr", "metric": "test GAUC", "rows": rows, "max_relative_loss": 0.01,
                          "default": "fp32", "stamp": STAMP}]}


def test_the_entropy_row_carries_what_it_tests() -> None:
    assert ENTROPY_NOTE in render(_results("fp32", "int8-static-minmax", "abl-entropy"))
    assert ENTROPY_NOTE not in render(_results("fp32", "int8-static-minmax"))
    assert "symmetric" in ENTROPY_NOTE and "uint8" in ENTROPY_NOTE and "2,048" in ENTROPY_NOTE


def test_rerender_stamps_the_header_and_is_idempotent(tmp_path: Path) -> None:
    source, report = tmp_path / "q.json", tmp_path / "q.md"
    source.write_text(json.dumps(_results("fp32", "int8-static-minmax", "abl-entropy")))
    argv = ["--rerender", str(source), "--report", str(report)]
    main(argv)
    first, saved = report.read_text(), source.read_text()
    main(argv)
    assert report.read_text() == first and source.read_text() == saved
    assert f"Re-rendered from its .json by `python -m exporters.quantize.report {' '.join(argv)}`" in first
    assert not report.with_suffix(".png").exists()  # the run's plot is left as it was


def _timed(recipe: str, rounds: list[float], passed: bool = True) -> dict:
    """A gated row whose batch-32 speed-up over fp32 was `rounds` in the run's rounds."""
    return {"recipe": recipe, "status": "ok", "passed": passed, "speedup": {"32": sorted(rounds)[len(rounds) // 2]},
            "speedup_rounds": {"32": rounds}}


def test_the_default_must_be_clearly_faster_in_every_round() -> None:
    from exporters.quantize.report import default_recipe

    fp32 = _timed("fp32", [1.0, 1.0, 1.0])
    # int8-dynamic has the higher pooled speed-up but dipped to 1.1x in one round: not clearly faster.
    rows = [fp32, _timed("int8-dynamic", [1.9, 1.1, 1.8]), _timed("int4-weight-only", [1.4, 1.35, 1.5])]
    assert default_recipe(rows) == "int4-weight-only"
    assert default_recipe([fp32, _timed("int8-dynamic", [1.9, 1.1, 1.8])]) == "fp32"
    assert default_recipe([fp32, _timed("int8-qat", [2.0, 2.0, 2.0], passed=False)]) == "fp32"  # the gate first
    legacy = {"recipe": "int8-dynamic", "status": "ok", "passed": True, "speedup": {"32": 1.6}}  # no rounds kept
    assert default_recipe([fp32, legacy]) == "int8-dynamic"


def test_round_speedups_pair_each_round_of_fp32_with_the_same_round() -> None:
    from exporters.quantize.report import gate

    class Family:
        max_relative_loss = 0.01

    def row(recipe: str, rounds: list[float]) -> dict:
        return {"recipe": recipe, "status": "ok", "quality": 0.7, "size_bytes": 100,
                "latency_ms": {"32": sorted(rounds)[1]}, "latency_ms_rounds": {"32": rounds}}

    rows = [row("fp32", [10.0, 20.0, 10.0]), row("int8-dynamic", [5.0, 10.0, 8.0])]
    gate(rows, Family())  # type: ignore[arg-type]
    assert rows[1]["speedup_rounds"]["32"] == [2.0, 2.0, 1.25]
