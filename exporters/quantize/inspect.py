"""Does a quantized graph really run integer kernels, or only simulate quantization?

We ask onnxruntime: it writes the graph it will execute after its own fusions, and we count the
operators. Q/DQ pairs around float ops that ORT could not fuse into integer kernels are simulation.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

INTEGER_OPS = {
    "QLinearMatMul", "QLinearConv", "MatMulInteger", "ConvInteger", "MatMulNBits", "QGemm", "QAttention",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "GatherBlockQuantized",
    "QLinearSigmoid", "QLinearConcat",
}
SIMULATION_OPS = {"QuantizeLinear", "DequantizeLinear"}
FLOAT_COMPUTE_OPS = {"MatMul", "Gemm", "Conv", "FusedMatMul", "FusedGemm", "FusedConv"}


def optimized_op_counts(path: Path) -> Counter:
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
        return Counter(node.op_type for node in graph.node)


def kernel_summary(path: Path) -> dict[str, object]:
    counts = optimized_op_counts(path)
    integer = {op: n for op, n in counts.items() if op in INTEGER_OPS}
    simulated = sum(counts[op] for op in SIMULATION_OPS)
    float_ops = {op: n for op, n in counts.items() if op in FLOAT_COMPUTE_OPS}
    if integer and not float_ops:
        verdict = "integer kernels"
    elif integer:
        verdict = "integer + float kernels"
    elif simulated:
        verdict = "simulated (Q/DQ around float ops)"
    else:
        verdict = "float"
    return {"verdict": verdict, "integer_ops": integer, "float_ops": float_ops, "qdq_nodes": simulated}


def is_conv_heavy(path: Path) -> bool:
    """More convolutions than matrix products: dynamic int8 would fall back to slow ConvInteger."""
    ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return ops["Conv"] > ops["MatMul"] + ops["Gemm"]


def qdq_parameters(path: Path) -> dict[str, list]:
    """The quantization parameters a QDQ graph really carries, split into weights (DequantizeLinear of an
    initializer, biases left out) and activations (QuantizeLinear of a computed tensor): zero points
    (their dtype and values) and the number of scales per tensor (1 = per-tensor, C = per-channel)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    found: dict[str, list] = {"weight_scales": [], "weight_zero_points": [], "activation_zero_points": [],
                              "activation_scales": []}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and len(node.input) > 2:
            if inits[node.input[0]].dtype == np.int32:  # a bias, quantized with the product of two scales
                continue
            found["weight_scales"].append(inits[node.input[1]].size)
            found["weight_zero_points"].append(inits[node.input[2]])
        elif node.op_type == "QuantizeLinear" and node.input[0] not in inits and len(node.input) > 2:
            found["activation_scales"].append(float(inits[node.input[1]]))
            found["activation_zero_points"].append(inits[node.input[2]])
    return found


def scheme_facts(paths: list[Path]) -> dict[str, Any]:
    """What the graphs say about their scheme, for the ablation table: the most scales on one weight
    tensor (1 = per-tensor), and the zero points' storage types and values (weights, activations)."""
    params = [qdq_parameters(p) for p in paths]

    def zero_points(key: str) -> str:
        values = [z for p in params for z in p[key]]
        if not values:
            return "-"
        types = sorted({z.dtype.name for z in values})
        unique = np.unique(np.concatenate([z.ravel().astype(np.int64) for z in values]))
        shown = ", ".join(map(str, unique[:3])) + (f", ... ({unique.size} values)" if unique.size > 3 else "")
        return f"{'/'.join(types)} {{{shown}}}"

    return {"max_weight_scales": max((n for p in params for n in p["weight_scales"]), default=0),
            "weight_zero_points": zero_points("weight_zero_points"),
            "activation_zero_points": zero_points("activation_zero_points"),
            "activation_scales": [s for p in params for s in p["activation_scales"]]}
