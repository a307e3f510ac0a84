"""The edge SDK's footprint and input handling (no sockets)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from infersuite.services.splitcompute.edge import as_model_input


def test_the_edge_sdk_imports_without_torch_or_the_server_runtime() -> None:
    code = ("import sys, infersuite.services.splitcompute.edge as e; "
            "bad = [m for m in ('torch', 'infersuite.services.runtime', 'pydantic_settings', 'models') "
            "if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_accepted_as_hwc_chw_or_batches_and_scaled_to_unit_range() -> None:
    hwc = np.full((96, 96, 3), 255, np.uint8)
    assert as_model_input(hwc, 96).shape == (1, 3, 96, 96) and float(as_model_input(hwc, 96).max()) == 1.0
    assert as_model_input(hwc.transpose(2, 0, 1), 96).shape == (1, 3, 96, 96)
    assert as_model_input(np.zeros((4, 3, 96, 96), np.uint8), 96).shape == (4, 3, 96, 96)
    with pytest.raises(ValueError, match="the encoder takes 96x96 RGB"):
        as_model_input(np.zeros((64, 64, 3), np.uint8), 96)
