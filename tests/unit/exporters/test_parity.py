"""The export parity check sees NaN and Inf (Python's max(0.0, nan) is 0.0; ours is inf)."""

import numpy as np
import pytest
import torch

from exporters.onnx_export import ParityError, check_parity, export_onnx, max_abs_diff


def test_max_abs_diff_is_infinite_on_nan_or_inf_on_either_side() -> None:
    a = np.array([1.0, 2.0], np.float32)
    assert max_abs_diff(a, a + 0.5) == pytest.approx(0.5)
    for bad in (np.nan, np.inf, -np.inf):
        assert max_abs_diff(a, np.array([1.0, bad])) == np.inf
        assert max_abs_diff(np.array([bad, 2.0]), a) == np.inf
    assert max_abs_diff(np.array([np.nan]), np.array([np.nan])) == np.inf  # equal NaNs are still a mismatch


class Root(torch.nn.Module):
    """sqrt(x): NaN on negative inputs, in torch and in onnxruntime alike."""

    input_names, output_names = ("x",), ("y",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)

    def dynamic_shapes(self) -> dict:
        return {"x": {0: torch.export.Dim("batch", min=1, max=8)}}

    def example_inputs(self) -> tuple[torch.Tensor]:
        return (torch.rand(2, 3),)


def test_check_parity_fails_when_both_sides_agree_on_nan(tmp_path) -> None:
    path = export_onnx(Root(), tmp_path / "root.onnx")
    assert check_parity(Root(), path, [(torch.rand(3, 3),)]) < 1e-6
    with pytest.raises(ParityError, match="NaN/Inf"):
        check_parity(Root(), path, [(torch.rand(3, 3),), (-torch.ones(2, 3),)])
