"""Single-factor ablations and mixed precision on a tiny PaSST block (the project's own layer),
exported with the dynamo exporter: the produced QDQ graphs are read back and must differ from their
reference in exactly the factor each ablation names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from exporters.quantize.inspect import kernel_summary, qdq_parameters
from exporters.quantize.mixed import (
    ACTIVATIONS,
    WEIGHT,
    build_mix,
    candidates,
    choose_int4,
    mixed,
    mixed_int4_int8,
)
from exporters.quantize.recipes import ABLATION_RECIPES, RECIPES
from exporters.quantize.schemes import ABLATIONS, BASE_RECIPE, SCHEMES

DIM, TOKENS = 32, 12


class TinyBlock(torch.nn.Module):
    input_names = ("tokens",)
    output_names = ("out",)

    def __init__(self) -> None:
        super().__init__()
        from models.audio.passt import Block

        torch.manual_seed(0)
        self.block = Block(DIM, heads=2, mlp_ratio=2.0, dropout=0.0).eval()
        for layer in self.block.modules():  # skewed weights: asymmetric ranges, zero points away from 128
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.uniform_(layer.weight, -0.1, 0.3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.block(tokens)

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return (torch.randn(2, TOKENS, DIM),)

    @staticmethod
    def dynamic_shapes() -> dict:
        return {"tokens": {0: torch.export.Dim("batch", min=1, max=64)}}


class RandomCalibration:
    """Fixed-shape calibration batches (entropy/percentile need equal shapes)."""

    family = "tiny"

    def calibration(self, graph: str, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(1)
        # A skewed distribution: asymmetric ranges, so symmetric and asymmetric schemes must differ.
        return [{"tokens": (rng.standard_normal((4, TOKENS, DIM)) + 0.5).astype(np.float32)} for _ in range(count)]


@pytest.fixture(scope="module")
def block(tmp_path_factory) -> Path:
    from exporters.onnx_export import export_onnx

    return export_onnx(TinyBlock(), tmp_path_factory.mktemp("block") / "block.onnx")


@pytest.fixture(scope="module")
def schemes(block, tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("schemes")
    recipes = {BASE_RECIPE: RECIPES[BASE_RECIPE], **ABLATION_RECIPES}
    return {name: qdq_parameters(recipe(block, work / f"{name}.onnx", RandomCalibration(), "block").path)
            for name, recipe in recipes.items()}


def _zero_points(params: dict, key: str) -> np.ndarray:
    return np.concatenate([z.ravel().astype(np.int64) for z in params[key]])


def test_every_ablation_changes_exactly_one_field_of_its_reference() -> None:
    for name, ablation in ABLATIONS.items():
        mine, reference = dataclasses.asdict(ablation.scheme), dataclasses.asdict(SCHEMES[ablation.reference])
        assert len([f for f in mine if mine[f] != reference[f]]) == 1, name


def test_base_graph_is_per_tensor_asymmetric_uint8(schemes) -> None:
    base = schemes[BASE_RECIPE]
    assert set(base["weight_scales"]) == {1}
    assert {z.dtype for z in base["weight_zero_points"]} == {np.dtype(np.uint8)}
    assert np.any(_zero_points(base, "weight_zero_points") != 128)
    assert np.any(_zero_points(base, "activation_zero_points") != 128)


def test_symmetry_ablations_fix_the_zero_point_of_their_tensor_only(schemes) -> None:
    base = schemes[BASE_RECIPE]
    weights, activations = schemes["abl-sym-weights"], schemes["abl-sym-activations"]
    assert set(_zero_points(weights, "weight_zero_points")) == {128}
    np.testing.assert_array_equal(_zero_points(weights, "activation_zero_points"),
                                  _zero_points(base, "activation_zero_points"))
    assert set(_zero_points(activations, "activation_zero_points")) == {128}
    np.testing.assert_array_equal(_zero_points(activations, "weight_zero_points"),
                                  _zero_points(base, "weight_zero_points"))


def test_per_channel_has_one_scale_per_output_channel(schemes) -> None:
    assert set(schemes["abl-sym-weights"]["weight_scales"]) == {1}
    per_channel = schemes["abl-per-channel"]["weight_scales"]
    assert sorted(per_channel) == sorted([3 * DIM, DIM, 2 * DIM, DIM])  # qkv, proj, fc1, fc2 out widths


def test_int8_storage_changes_the_weight_dtype_only(schemes) -> None:
    params = schemes["abl-int8-weights"]
    assert {z.dtype for z in params["weight_zero_points"]} == {np.dtype(np.int8)}
    assert params["activation_scales"] == schemes[BASE_RECIPE]["activation_scales"]


@pytest.mark.parametrize("name", ["abl-percentile", "abl-entropy"])
def test_calibration_ablations_change_activation_ranges_not_weights(schemes, name) -> None:
    base, params = schemes[BASE_RECIPE], schemes[name]
    assert params["weight_scales"] == base["weight_scales"]
    np.testing.assert_array_equal(_zero_points(params, "weight_zero_points"), _zero_points(base, "weight_zero_points"))
    ratio = np.asarray(params["activation_scales"]) / np.asarray(base["activation_scales"])
    assert np.all(ratio <= 1.0 + 1e-6) and np.any(ratio < 0.95), ratio  # clipped ranges, never wider


def test_candidates_include_the_attention_products(block) -> None:
    kinds = candidates(block)
    assert sorted(kinds.values()).count(ACTIVATIONS) == 2  # q @ k^T and weights @ v
    assert sorted(kinds.values()).count(WEIGHT) == 4  # qkv, proj, fc1, fc2


def test_int4_choice_spends_at_most_the_int8_noise() -> None:
    scores = [("a", 40.0), ("b", 33.0), ("c", 31.0), ("d", 20.0)]  # least sensitive first
    # int8 at 30 dB: budget 1e-3; a (1e-4) + b (5e-4) fit, c (7.9e-4 more) does not.
    assert choose_int4(scores, 30.0) == ["a", "b"]
    assert choose_int4(scores, 45.0) == []


def test_a_4_8_bit_mix_runs_both_kernels(block, tmp_path) -> None:
    weights = [name for name, kind in candidates(block).items() if kind == WEIGHT]
    build_mix(block, tmp_path / "mix.onnx", RandomCalibration(), "block", weights[:2])
    ops = kernel_summary(tmp_path / "mix.onnx")["integer_ops"]
    assert ops.get("MatMulNBits", 0) == 2
    assert ops.get("QLinearMatMul", 0) + ops.get("QGemm", 0) >= 4  # 2 weight MatMuls + the attention products


def test_an_empty_4_bit_set_quantizes_nothing_to_4_bits(block, tmp_path) -> None:
    build_mix(block, tmp_path / "mix.onnx", RandomCalibration(), "block", [])
    assert "MatMulNBits" not in kernel_summary(tmp_path / "mix.onnx")["integer_ops"]


def test_mixed_recipes_quantize_what_they_report(block, tmp_path) -> None:
    out = mixed_int4_int8(block, tmp_path / "mix.onnx", RandomCalibration(), "block")
    chosen = int(out.notes[0].split(" of ")[0])  # the budget decides; the graph must match the note
    assert kernel_summary(out.path)["integer_ops"].get("MatMulNBits", 0) == chosen
    kept = mixed(block, tmp_path / "mixed.onnx", RandomCalibration(), "block")
    assert "candidates (2 act x act MatMuls)" in kept.notes[0]


def _family_results(family: str) -> dict:
    kernels = {"g": {"verdict": "integer kernels", "integer_ops": {"QLinearMatMul": 2}}}
    qdq = {"max_weight_scales": 1, "weight_zero_points": "uint8 {128}", "activation_zero_points": "uint8 {7}",
           "activation_scales": [0.1, 0.2]}

    def row(recipe: str, quality: float, ms: float) -> dict:
        return {"recipe": recipe, "status": "ok", "quality": quality, "relative_loss": (0.8 - quality) / 0.8,
                "passed": quality >= 0.792, "size_bytes": 1024, "size_ratio": 1.0, "latency_ms": {"1": ms, "32": ms},
                "speedup": {"32": 1.0}, "kernels": kernels, "notes": [], "qdq": qdq}

    stamp = {"command": f"python -m exporters.quantize.report --families {family}", "commit": "abc", "utc": "now",
             "machine": "m", "onnxruntime": "1", "threads": 1, "load_before": "1", "load_after": "2"}
    rows = [row("fp32", 0.80, 10.0), row(BASE_RECIPE, 0.79, 8.0), row("abl-sym-weights", 0.78, 8.0),
            row("abl-per-channel", 0.79, 4.0)]
    return {"family": family, "metric": "GAUC", "max_relative_loss": 0.01, "default": "fp32", "rows": rows,
            "stamp": stamp}


def test_the_ablation_table_attributes_each_change_to_its_reference() -> None:
    from exporters.quantize.render import render

    text = render({"families": [_family_results("ctr")]})
    # sym-weights vs the base: 0.78 / 0.79 - 1; per-channel vs sym-weights (its reference), 2x faster.
    assert ("| abl-sym-weights | weights symmetric | int8-static-minmax | 0.7800 | -1.27% | +2.50% | FAILED "
            "| 1.00x |") in text
    assert ("| abl-per-channel | weights per-channel | abl-sym-weights | 0.7900 | +1.28% | +1.25% | FAILED "
            "| 2.00x |") in text
    assert "abl-entropy" not in text  # not run: no row


def test_combine_writes_every_family_with_its_own_stamp(tmp_path) -> None:
    import json

    from exporters.quantize.report import main

    (tmp_path / "a.json").write_text(json.dumps({"families": [_family_results("segmentation")]}))
    (tmp_path / "b.json").write_text(json.dumps({"families": [_family_results("ctr")]}))
    main(["--combine", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--report", str(tmp_path / "q.md")])
    text = (tmp_path / "q.md").read_text()
    assert text.index("## ctr") < text.index("## segmentation")  # the report's family order
    assert "`python -m exporters.quantize.report --families segmentation`" in text
    assert "`python -m exporters.quantize.report --families ctr`" in text
    assert "combined by `python -m exporters.quantize.report --combine" in text
    assert (tmp_path / "q.png").stat().st_size > 0


def test_tensorrt_entropy_is_symmetric_int8_with_its_own_activation_ranges(block, schemes, tmp_path) -> None:
    params = schemes["abl-entropy-tensorrt"]
    assert {z.dtype for z in params["activation_zero_points"]} == {np.dtype(np.int8)}
    assert set(_zero_points(params, "activation_zero_points")) == {0}  # symmetric: (-T, +T)
    # Against the recipe it differs from only in calibration: same weights, other activation ranges.
    reference = qdq_parameters(RECIPES["int8-static-perchannel"](block, tmp_path / "pc.onnx", RandomCalibration(),
                                                                 "block").path)
    assert sorted(params["weight_scales"]) == sorted(reference["weight_scales"])
    assert not np.allclose(np.asarray(params["activation_scales"]), np.asarray(reference["activation_scales"]))
