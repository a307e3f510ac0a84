"""What a model family provides so that every recipe can run on it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class RecipeRefused(Exception):
    """A recipe that does not apply to a graph (the reason is reported, nothing is written)."""


class QuantFamily(Protocol):
    family: str  # e.g. "ctr"
    metric: str  # the quality figure, higher is better, e.g. "test GAUC"
    max_relative_loss: float  # quality gate: allowed relative drop vs fp32 (0.01 = 1%)

    def graphs(self) -> dict[str, Path]:
        """Repository model name prefix -> fp32 ONNX graph (one per stage for staged families)."""
        ...

    def calibration(self, graph: str, count: int) -> list[dict[str, np.ndarray]]:
        """Fixed-shape input batches from the family's synthetic data (calibration set)."""
        ...

    def evaluate(self, graphs: dict[str, Path]) -> float:
        """The quality metric of the pipeline built from these graphs on held-out data."""
        ...

    def latency_inputs(self, graph: str, batch: int) -> dict[str, np.ndarray]:
        """Representative inputs with `batch` rows for the latency measurement."""
        ...

    def qat(self, graph: str, out: Path) -> Path:
        """Fine-tunes with fake quantization (STE) and exports the float graph to `out`;
        raises RecipeRefused when the family has no QAT loop for this graph."""
        ...
