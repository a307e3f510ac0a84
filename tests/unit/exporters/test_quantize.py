"""Quantization recipes on a tiny trained DIN: real onnxruntime.quantization output, inspected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from exporters.quantize import RECIPES, RecipeRefused
from exporters.quantize.inspect import is_conv_heavy, kernel_summary
from exporters.quantize.report import gate, publish
from infersuite.services.runtime.repository import ModelRepository


@pytest.fixture(scope="module")
def family(tiny_ctr):
    from exporters.ctr_quant import CtrQuantization

    return CtrQuantization(tiny_ctr.checkpoint, tiny_ctr.repository)


def _run(recipe: str, family, tmp_path: Path) -> Path:
    out = tmp_path / f"{recipe}.onnx"
    RECIPES[recipe](family.graphs()["din"], out, family, "din")
    return out


def test_static_minmax_runs_integer_kernels_and_keeps_quality(family, tmp_path) -> None:
    out = _run("int8-static-minmax", family, tmp_path)
    summary = kernel_summary(out)
    assert summary["integer_ops"].get("QLinearMatMul", 0) > 0, summary
    base, quantized = family.evaluate(family.graphs()), family.evaluate({"din": out})
    assert abs(base - quantized) < 0.05
    assert out.stat().st_size < family.graphs()["din"].stat().st_size


def test_int4_weight_only_uses_matmulnbits_and_fp16_keeps_float32_io(family, tmp_path) -> None:
    assert "MatMulNBits" in kernel_summary(_run("int4-weight-only", family, tmp_path))["integer_ops"]
    fp16 = _run("fp16", family, tmp_path)
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert {i.name: i.type for i in session.get_inputs()}["history_mask"] == "tensor(float)"
    inputs = family.latency_inputs("din", 2)
    np.testing.assert_allclose(session.run(None, inputs)[0],
                               ort.InferenceSession(str(family.graphs()["din"])).run(None, inputs)[0], atol=2e-2)


def _conv_graph(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, np.float32).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"]), helper.make_node("Relu", ["c1"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "conv", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def test_dynamic_int8_refuses_conv_heavy_graphs(tmp_path) -> None:
    conv = _conv_graph(tmp_path / "conv.onnx")
    assert is_conv_heavy(conv)
    with pytest.raises(RecipeRefused, match="ConvInteger"):
        RECIPES["int8-dynamic"](conv, tmp_path / "out.onnx", None, "conv")


def test_gate_marks_failures_and_the_default_is_the_fastest_passing_cpu_recipe(family, tmp_path, tiny_ctr) -> None:
    import shutil

    repository = tmp_path / "repo"
    shutil.copytree(tiny_ctr.repository, repository)
    size = family.graphs()["din"].stat().st_size
    paths = {r: str(_run("fp32", family, tmp_path)) for r in ("fp32", "slow", "broken", "fp16")}
    rows = [{"recipe": r, "status": "ok", "quality": q, "latency_ms": {"1": lat, "32": lat}, "size_bytes": size,
             "paths": {"din": paths[r]}, "kernels": {"din": {"verdict": "float"}}, "notes": []}
            for r, q, lat in (("fp32", 0.70, 2.0), ("slow", 0.70, 3.0), ("broken", 0.60, 0.5), ("fp16", 0.70, 1.0))]
    gate(rows, family)
    assert [r["passed"] for r in rows] == [True, True, False, True]
    assert publish(family, rows, repository) == "fp32"  # broken is faster but failed; fp16 is GPU-only
    repo = ModelRepository(repository)
    assert repo.canonical("din") == "din-fp32"
    assert repo.resolve("din-broken").meta["quality_gate"] == "FAILED"
    assert repo.resolve("din-broken").config.name == "din-broken"


def test_fp16_keeps_one_cast_for_a_float32_input_shared_by_blocked_ops(tmp_path) -> None:
    """Two Resize nodes (kept float32 by the converter) share one `scales` tensor: the converter writes
    the same Cast twice, which onnxruntime refuses; the recipe keeps one and the graph runs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scales = helper.make_tensor("s", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0])
    nodes = [helper.make_node("Identity", ["s"], ["s2"]),
             helper.make_node("Resize", ["x", "", "s2"], ["a"], mode="nearest"),
             helper.make_node("Resize", ["x", "", "s2"], ["b"], mode="nearest"),
             helper.make_node("Add", ["a", "b"], ["y"])]
    src = tmp_path / "resize.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "resize", [x], [y], [scales]), ir_version=9,
                                opset_imports=[helper.make_opsetid("", 18)]), str(src))
    out = tmp_path / "resize16.onnx"
    RECIPES["fp16"](src, out, None, "resize")
    casts = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Cast" and n.input == ["s2"]]
    assert len(casts) == 1, casts
    image = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": image})[0]
    np.testing.assert_allclose(got, 2 * np.repeat(np.repeat(image, 2, axis=2), 2, axis=3))


def test_qat_graph_stores_its_weights_in_8_bits_and_computes_the_same(family, tmp_path) -> None:
    """The QAT export quantizes float weights at run time; the recipe folds those QuantizeLinear nodes
    into 8-bit initializers offline: smaller than fp32, identical outputs, activations still Q/DQ."""
    from exporters.quantize.recipes import fold_constant_quantization

    exported = family.qat_qdq("din", tmp_path / "qat.onnx")
    folded = fold_constant_quantization(exported, tmp_path / "folded.onnx")
    graph = onnx.load(str(folded)).graph
    assert [o.domain for o in onnx.load(str(folded)).opset_import] == [""]  # standard ONNX only
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    computed_quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert all(n.input[0] in produced for n in computed_quantize)  # none left on a constant
    assert 0 < len(computed_quantize) < 16  # the activations' Q/DQ stay
    eight_bit = [i for i in graph.initializer if i.data_type in (TensorProto.UINT8, TensorProto.INT8)]
    assert sum(int(np.prod(i.dims)) for i in eight_bit) >= 1000, [i.name for i in eight_bit]
    fp32 = family.graphs()["din"]
    assert folded.stat().st_size < fp32.stat().st_size < exported.stat().st_size
    inputs = family.latency_inputs("din", 4)
    want = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).run(None, inputs)
    have = ort.InferenceSession(str(folded), providers=["CPUExecutionProvider"]).run(None, inputs)
    for w, h in zip(want, have, strict=True):
        assert np.isfinite(h).all()
        np.testing.assert_array_equal(h, w)
