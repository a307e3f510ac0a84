"""Does a quantized graph really run integer kernels, or only simulate quantization?

We ask onnxruntime: it writes the graph it will execute after its own fusions, and we count the
operators. Q/DQ pairs around float ops that ORT could not fuse into integer kernels are simulation.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

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
