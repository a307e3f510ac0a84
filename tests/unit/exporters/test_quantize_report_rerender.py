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
