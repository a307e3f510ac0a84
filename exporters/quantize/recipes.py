"""The recipes, each a function (fp32 graph -> quantized graph) selectable by name.

Survey sections: III-B/C/D (uniform, symmetric/asymmetric, static/dynamic ranges), III-E
(per-channel and group-wise granularity), III-G (quantization-aware training with the
straight-through estimator), IV-B (mixed precision).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from onnxruntime.transformers.float16 import convert_float_to_float16

from exporters.quantize.family import QuantFamily, RecipeRefused
from exporters.quantize.inspect import is_conv_heavy

log = logging.getLogger(__name__)
CALIBRATION_BATCHES = 16
QUANTIZABLE = ("MatMul", "Gemm", "Conv")


@dataclass
class RecipeOutput:
    path: Path
    notes: list[str] = field(default_factory=list)


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _preprocess(src: Path, work: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation) when it applies."""
    out = work / "pre.onnx"
    try:
        # Its symbolic shape inference writes temporary files into the working directory.
        with contextlib.chdir(work):
            quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
        return out
    except Exception as exc:  # symbolic shape inference cannot follow every dynamic graph
        log.info("pre-processing skipped for %s: %s", src.name, exc)
        return src


def _kept_in_float(family: QuantFamily | None, graph: str) -> list[str]:
    """Nodes the family asks to keep in float in every recipe (e.g. a signal-processing front end)."""
    hook = getattr(family, "float_nodes", None)
    return list(hook(graph)) if hook is not None else []


def fp32(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    shutil.copyfile(src, dst)
    return RecipeOutput(dst)


def fp16(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return RecipeOutput(dst, ["float16 weights and activations, float32 I/O; a GPU recipe"])


def int8_dynamic(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    if is_conv_heavy(src):
        raise RecipeRefused("conv-heavy graph: dynamic int8 would run ConvInteger, ~9x slower than fp32 on this CPU")
    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(str(_preprocess(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=_kept_in_float(family, graph))
    return RecipeOutput(dst, ["weights int8 per-tensor; activation ranges computed at run time"])


def _static(src: Path, dst: Path, family: QuantFamily, graph: str, *, per_channel: bool,
            calibration: CalibrationMethod, symmetric_activations: bool, exclude: list[str] | None = None) -> None:
    batches = family.calibration(graph, CALIBRATION_BATCHES)
    activation = QuantType.QInt8 if symmetric_activations else QuantType.QUInt8
    weight = QuantType.QInt8 if per_channel else QuantType.QUInt8
    extra = {"ActivationSymmetric": symmetric_activations, "WeightSymmetric": per_channel,
             "CalibPercentile": 99.99, "CalibMovingAverage": False}
    with tempfile.TemporaryDirectory() as tmp:
        quantize_static(str(_preprocess(src, Path(tmp))), str(dst), _Reader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=activation, weight_type=weight,
                        calibrate_method=calibration, op_types_to_quantize=list(QUANTIZABLE),
                        nodes_to_exclude=[*(exclude or []), *_kept_in_float(family, graph)], extra_options=extra)


def int8_static_minmax(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    _static(src, dst, family, graph, per_channel=False, calibration=CalibrationMethod.MinMax,
            symmetric_activations=False)
    return RecipeOutput(dst, ["QDQ; uint8 activations and weights per-tensor asymmetric; min-max calibration"])


def int8_static_perchannel(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    _static(src, dst, family, graph, per_channel=True, calibration=CalibrationMethod.Percentile,
            symmetric_activations=True)
    return RecipeOutput(dst, ["QDQ; int8 symmetric per-channel weights, int8 symmetric activations "
                              "(TensorRT's explicit-quantization form); 99.99th percentile calibration"])


def int8_qat(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    with tempfile.TemporaryDirectory() as tmp:
        finetuned = family.qat(graph, Path(tmp) / "qat_float.onnx")
        _static(finetuned, dst, family, graph, per_channel=False, calibration=CalibrationMethod.MinMax,
                symmetric_activations=False)
    return RecipeOutput(dst, ["fine-tuned with fake quantization (straight-through estimator), then the "
                              "int8-static-minmax QDQ conversion"])


def int4_weight_only(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=32, is_symmetric=True,
                                     op_types_to_quantize=("MatMul", "Gather"),
                                     nodes_to_exclude=_kept_in_float(family, graph))
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return RecipeOutput(dst, ["4-bit weights, blocks of 32 (MatMulNBits / GatherBlockQuantized); float activations"])


def _quantizable_nodes(path: Path) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type in QUANTIZABLE and any(i in constants for i in n.input)]


def nodes_before(path: Path, op_type: str) -> list[str]:
    """Quantizable nodes that come before the first `op_type` node (topological order)."""
    names: list[str] = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type == op_type:
            return names
        if node.op_type in QUANTIZABLE:
            names.append(node.name)
    return []


def _sqnr_db(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
    noise = sum(float(np.sum((r.astype(np.float64) - c) ** 2)) for r, c in zip(reference, candidate, strict=True))
    return 10 * math.log10(signal / noise) if noise > 0 else float("inf")


def _outputs(path: Path, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [out for batch in batches for out in session.run(None, batch)]


def sensitivity(src: Path, family: QuantFamily, graph: str, work: Path) -> list[tuple[str, float]]:
    """Per-layer sensitivity: output SQNR (dB) when ONLY that layer is quantized. Lower = more sensitive."""
    batches = family.calibration(graph, 4)
    reference = _outputs(src, batches)
    nodes = [n for n in _quantizable_nodes(src) if n not in _kept_in_float(family, graph)]
    scores: list[tuple[str, float]] = []
    for node in nodes:
        out = work / f"only_{len(scores)}.onnx"
        _static(src, out, family, graph, per_channel=False, calibration=CalibrationMethod.MinMax,
                symmetric_activations=False, exclude=[n for n in nodes if n != node])
        scores.append((node, _sqnr_db(reference, _outputs(out, batches))))
    return sorted(scores, key=lambda item: item[1])


def mixed(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    """Keeps the k most sensitive layers in float: k grows (1, 2, 3, ... up to half the layers)
    until the output SQNR of the int8-static-minmax graph improves by >= 3 dB; otherwise the k
    with the largest gain within that bound is kept."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ranking = sensitivity(src, family, graph, work)
        batches = family.calibration(graph, 4)
        reference = _outputs(src, batches)
        _static(src, work / "all.onnx", family, graph, per_channel=False, calibration=CalibrationMethod.MinMax,
                symmetric_activations=False)
        base = _sqnr_db(reference, _outputs(work / "all.onnx", batches))
        gains: dict[int, float] = {}
        for k in range(1, max(1, len(ranking) // 2) + 1):
            _static(src, work / f"keep_{k}.onnx", family, graph, per_channel=False,
                    calibration=CalibrationMethod.MinMax, symmetric_activations=False,
                    exclude=[name for name, _ in ranking[:k]])
            gains[k] = _sqnr_db(reference, _outputs(work / f"keep_{k}.onnx", batches)) - base
            if gains[k] >= 3.0:
                break
        k = next((k for k, g in gains.items() if g >= 3.0), max(gains, key=gains.__getitem__))
        gained = gains[k]
        shutil.copyfile(work / f"keep_{k}.onnx", dst)
    sensitive = ", ".join(f"{name} ({db:.1f} dB)" for name, db in ranking[:k])
    return RecipeOutput(dst, [f"k={k} of {len(ranking)} layers kept in float: {sensitive}; output SQNR "
                              f"{base:.1f} dB -> {base + gained:.1f} dB (+{gained:.1f} dB)"])


Recipe = Callable[[Path, Path, QuantFamily, str], RecipeOutput]
RECIPES: dict[str, Recipe] = {
    "fp32": fp32, "fp16": fp16, "int8-dynamic": int8_dynamic, "int8-static-minmax": int8_static_minmax,
    "int8-static-perchannel": int8_static_perchannel, "int8-qat": int8_qat, "int4-weight-only": int4_weight_only,
    "mixed": mixed,
}
