"""The official HEAR 2021 validator (hearvalidator 2021.0.6, in its own venv from `make hear-tools`)
accepts both embedders under their HEAR module names, on the tiny trained models."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures_audio import tiny_audio  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".hear-venv" / "bin" / "hear-validator"


@pytest.mark.parametrize("embedder", ["passt", "bow"])
def test_hearvalidator_passes(tiny_audio, embedder) -> None:  # noqa: F811
    assert VALIDATOR.is_file(), "hearvalidator is missing: `make hear-tools` (part of `make test`) installs it"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([str(VALIDATOR), f"hear_infersuite.{embedder}", "--model",
                          str(tiny_audio.repository / f"audio-{embedder}-fp32"), "--device", "cpu"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Received torch Module" in output and run.stdout.rstrip().endswith("Looks good!"), output[-3000:]
