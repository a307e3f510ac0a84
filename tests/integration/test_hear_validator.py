"""The official HEAR 2021 validator (hearvalidator 2021.0.6, in its own venv from `make hear-tools`)
accepts both embedders under their HEAR module names, on the tiny trained models."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".hear-venv" / "bin" / "hear-validator"
EMBEDDERS = ("passt", "bow")


@pytest.fixture(scope="module")
def validations(tiny_audio) -> dict[str, tuple[int, str]]:
    """Both validators at once (most of each run is importing tensorflow and torch)."""
    assert VALIDATOR.is_file(), "hearvalidator is missing: `make hear-tools` (part of `make test`) installs it"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    runs = {embedder: subprocess.Popen(
        [str(VALIDATOR), f"hear_infersuite.{embedder}", "--device", "cpu",
         "--model", str(tiny_audio.repository / f"audio-{embedder}-fp32")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT) for embedder in EMBEDDERS}
    outputs = {embedder: run.communicate(timeout=300)[0] for embedder, run in runs.items()}
    return {embedder: (run.returncode, outputs[embedder]) for embedder, run in runs.items()}


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_hearvalidator_passes(validations, embedder) -> None:
    returncode, output = validations[embedder]
    assert returncode == 0, output[-3000:]
    assert "Received torch Module" in output and output.rstrip().endswith("Looks good!"), output[-3000:]
