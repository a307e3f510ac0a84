"""The audio real-time-factor comparison (benchmarks/audio/rtf.py): an earlier revision's graphs come out of git
byte for byte, the per-round ratios pair each round's two figures, and the report marks the goal and an invalid
run. No timing is asserted: the figures here are made up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.audio import rtf

ROOT = Path(__file__).resolve().parents[3]


def test_an_earlier_revisions_graph_is_read_from_git_byte_for_byte(tmp_path: Path) -> None:
    folder = rtf.extract("HEAD", "audio-bow-fp32", tmp_path)
    committed = subprocess.run(["git", "show", "HEAD:shipped_models/audio-bow-fp32/1/model.onnx"], cwd=ROOT,
                               check=True, capture_output=True).stdout
    assert (folder / "1" / "model.onnx").read_bytes() == committed and (folder / "1" / "meta.json").is_file()
    from hear_infersuite import api as hear

    assert hear.load_model(str(folder)).sample_rate == 32000  # a folder the HEAR module loads, as the benchmark does


def _result(foreign: float) -> dict:
    runs = [{"round": k, "model": model, "which": which, "rtf_per_core": per_core, "rtf_wall": 2 * per_core}
            for k, factor in ((1, 1.0), (2, 0.5), (3, 0.9))
            for model in rtf.MODELS
            for which, per_core in (("before", 400.0), ("now", 400.0 * factor))]
    return {"before": "abc1234", "now": "def5678", "repository": "shipped_models", "rounds": 3, "runs": runs,
            "cores": {"idle_share": 0.4, "foreign_share": foreign, "offenders": []}, "load_after": [0.5, 0.5, 0.5]}


def test_ratios_pair_each_rounds_figures_and_the_report_says_whether_the_goal_is_met() -> None:
    result = _result(foreign=0.0)
    assert rtf.ratios(result, "audio-passt-fp32", "rtf_per_core") == [1.0, 0.5, 0.9]
    text = rtf.render(result, "python -m benchmarks.audio.rtf")
    assert "| audio-passt-fp32 | 400x | 360x | 1.000, 0.500, 0.900 | 0.900 | met | 800x / 720x |" in text
    assert "INVALID" not in text
    assert rtf.render(_result(foreign=0.2), "cmd").startswith("> **INVALID")
