"""The recipes, each a function (fp32 graph -> quantized graph) selectable by name.

Survey sections: III-B/C/D (uniform, symmetric/asymmetric, static/dynamic ranges), III-E
(per-channel and group-wise granularity), III-G (quantization-aware training with the
straight-through estimator), IV-B (mixed precision). The int8 static schemes and their
single-factor ablations live in schemes.py, mixed precision in mixed.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from onnxruntime.transformers.float16 import convert_float_to_float16

from exporters.quantize.family import QuantFamily, RecipeRefused
from exporters.quantize.inspect import is_conv_heavy
from exporters.quantize.mixed import mixed, mixed_int4_int8
from exporters.quantize.schemes import (
    ABLATIONS,
    BASE_SCHEME,
    PER_CHANNEL_SCHEME,
    RecipeOutput,
    StaticScheme,
    kept_in_float,
    nodes_before,
    preprocess,
    static,
)

__all__ = ["ABLATION_RECIPES", "RECIPES", "RecipeOutput", "fold_constant_quantization", "nodes_before"]
Recipe = Callable[[Path, Path, QuantFamily, str], RecipeOutput]


def _without_repeated_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float16 converter casts a blocked op's float input back to float32 once per consumer: two
    Resize nodes sharing one `scales` tensor get two identical Cast nodes writing the same output, which
    onnxruntime refuses (two nodes with the same name). Identical nodes compute the same tensor: keep one."""
    seen: set[bytes] = set()
    kept = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def fp32(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    shutil.copyfile(src, dst)
    return RecipeOutput(dst)


def fp16(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    model = _without_repeated_nodes(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True))
    onnx.save(model, str(dst))
    return RecipeOutput(dst, ["float16 weights and activations, float32 I/O; a GPU recipe"])


def int8_dynamic(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    if is_conv_heavy(src):
        raise RecipeRefused("conv-heavy graph: dynamic int8 would run ConvInteger, ~9x slower than fp32 on this CPU")
    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(str(preprocess(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=kept_in_float(family, graph))
    return RecipeOutput(dst, ["weights int8 per-tensor; activation ranges computed at run time"])


def scheme_recipe(scheme: StaticScheme, label: str = "") -> Recipe:
    """The int8 static QDQ recipe of one scheme."""

    def recipe(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
        static(src, dst, family, graph, scheme)
        return RecipeOutput(dst, [f"{label}{scheme.describe()}"])

    return recipe


def _has_qdq(path: Path) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


def int8_qat(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    """The family's QAT fine-tune. A graph exported with its own Q/DQ (the fake quantizers' scales and
    zero points: a family's `qat_qdq`, in the base scheme) is served as it is; a float graph gets the
    int8-static-minmax conversion with a fresh calibration."""
    deployable = getattr(family, "qat_qdq", None)
    with tempfile.TemporaryDirectory() as tmp:
        finetuned = (deployable or family.qat)(graph, Path(tmp) / "qat.onnx")
        if _has_qdq(finetuned):
            fold_constant_quantization(finetuned, dst)
            return RecipeOutput(dst, ["fine-tuned with fake quantization (straight-through estimator); served "
                                      "with the Q/DQ scales and zero points of its own fake quantizers (no "
                                      "fresh calibration); weights stored 8-bit"])
        static(finetuned, dst, family, graph)
    return RecipeOutput(dst, ["fine-tuned with fake quantization (straight-through estimator), then the "
                              f"int8-static-minmax conversion with a fresh calibration ({BASE_SCHEME.describe()})"])


def fold_constant_quantization(src: Path, dst: Path) -> Path:
    """A Q/DQ graph exported from torch quantizes its float weights at run time (QuantizeLinear on a
    constant, sometimes through the arithmetic that built it, e.g. a split-and-summed weight): the file
    keeps float weights and is larger than fp32. onnxruntime's basic level (constant folding only:
    standard ONNX ops, provider-independent) computes those once and stores the 8-bit weights, which
    the DequantizeLinear nodes read as quantize_static's own output does. Activation Q/DQ stay."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(dst))  # onnxruntime declares every domain it knows; keep those the nodes use
    used = {node.domain for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if opset.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return dst


def int4_weight_only(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=32, is_symmetric=True,
                                     op_types_to_quantize=("MatMul", "Gather"),
                                     nodes_to_exclude=kept_in_float(family, graph))
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return RecipeOutput(dst, ["4-bit weights, blocks of 32 (MatMulNBits / GatherBlockQuantized); float activations"])


# Deployable recipes: written into the model repository, candidates for the family default.
RECIPES: dict[str, Recipe] = {
    "fp32": fp32, "fp16": fp16, "int8-dynamic": int8_dynamic,
    "int8-static-minmax": scheme_recipe(BASE_SCHEME, "the ablations' base: "),
    "int8-static-perchannel": scheme_recipe(PER_CHANNEL_SCHEME, "TensorRT's explicit-quantization form: "),
    "int8-qat": int8_qat, "int4-weight-only": int4_weight_only, "mixed": mixed, "mixed-int4-int8": mixed_int4_int8,
}
# Studies: int8-static-minmax with exactly one factor changed; measured and reported, never published.
ABLATION_RECIPES: dict[str, Recipe] = {name: scheme_recipe(a.scheme, f"{a.reference} + {a.factor}: ")
                                       for name, a in ABLATIONS.items()}
