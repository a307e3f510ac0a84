"""Mixed precision chosen by measured sensitivity (survey IV-B).

Candidates are every quantizable node: MatMul/Gemm/Conv with a weight (an initializer input) and
MatMuls of two activations (attention's Q K^T and weights x V, DIN's attention pooling), which
the int8 static recipes quantize too. Sensitivity of a node = the output SQNR (dB) when only that
node is quantized; lower is more sensitive.

- `mixed`: int8 everywhere but the most sensitive nodes, kept in float.
- `mixed_int4_int8`: weight MatMuls that tolerate 4 bits go to MatMulNBits (4-bit blocks), the
  rest of the graph is int8 QDQ; the 4-bit set is chosen against a noise budget (below).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from exporters.quantize.family import QuantFamily
from exporters.quantize.schemes import QUANTIZABLE, RecipeOutput, kept_in_float, outputs, sqnr_db, static

WEIGHT, ACTIVATIONS = "weight", "activation x activation"
SENSITIVITY_BATCHES = 4
INT4_BLOCK = 32


def candidates(path: Path) -> dict[str, str]:
    """Quantizable node name -> WEIGHT (an initializer or Constant input) or ACTIVATIONS (a MatMul of two
    computed tensors)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    found: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in QUANTIZABLE:
            continue
        if any(i in constants for i in node.input):
            found[node.name] = WEIGHT
        elif node.op_type == "MatMul":
            found[node.name] = ACTIVATIONS
    return found


def _reference(src: Path, family: QuantFamily, graph: str) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    batches = family.calibration(graph, SENSITIVITY_BATCHES)[:SENSITIVITY_BATCHES]
    return batches, outputs(src, batches)


def sensitivity(src: Path, family: QuantFamily, graph: str, work: Path) -> list[tuple[str, float]]:
    """int8 sensitivity: output SQNR (dB) when ONLY that node is quantized, most sensitive first."""
    batches, reference = _reference(src, family, graph)
    nodes = [n for n in candidates(src) if n not in kept_in_float(family, graph)]
    scores: list[tuple[str, float]] = []
    for node in nodes:
        out = work / f"only_{len(scores)}.onnx"
        static(src, out, family, graph, exclude=[n for n in nodes if n != node])
        scores.append((node, sqnr_db(reference, outputs(out, batches))))
    return sorted(scores, key=lambda item: item[1])


def _label(name: str, kinds: dict[str, str]) -> str:
    return f"{name} [act x act]" if kinds.get(name) == ACTIVATIONS else name


def mixed(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    """Keeps the k most sensitive nodes in float: k grows (1, 2, 3, ... up to half the candidates)
    until the output SQNR of the all-int8 graph improves by >= 3 dB; otherwise the k with the
    largest gain within that bound is kept."""
    kinds = candidates(src)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ranking = sensitivity(src, family, graph, work)
        batches, reference = _reference(src, family, graph)
        static(src, work / "all.onnx", family, graph)
        base = sqnr_db(reference, outputs(work / "all.onnx", batches))
        gains: dict[int, float] = {}
        for k in range(1, max(1, len(ranking) // 2) + 1):
            static(src, work / f"keep_{k}.onnx", family, graph, exclude=[name for name, _ in ranking[:k]])
            gains[k] = sqnr_db(reference, outputs(work / f"keep_{k}.onnx", batches)) - base
            if gains[k] >= 3.0:
                break
        k = next((k for k, g in gains.items() if g >= 3.0), max(gains, key=gains.__getitem__))
        shutil.copyfile(work / f"keep_{k}.onnx", dst)
    n_act = sum(kind == ACTIVATIONS for kind in kinds.values())
    sensitive = ", ".join(f"{_label(name, kinds)} ({db:.1f} dB)" for name, db in ranking[:k])
    return RecipeOutput(dst, [f"k={k} of {len(ranking)} candidates ({n_act} act x act MatMuls) kept in float: "
                              f"{sensitive}; output SQNR {base:.1f} dB -> {base + gains[k]:.1f} dB "
                              f"(+{gains[k]:.1f} dB)"])


def int4_matmuls(src: Path, dst: Path, nodes: list[str]) -> None:
    """4-bit block-wise symmetric weights (MatMulNBits) for exactly `nodes`, the rest unchanged."""
    if not nodes:  # the quantizer reads an empty include list as "every MatMul"
        shutil.copyfile(src, dst)
        return
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=INT4_BLOCK, is_symmetric=True,
                                     nodes_to_include=list(nodes), op_types_to_quantize=("MatMul",))
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def int4_sensitivity(src: Path, nodes: list[str], batches: list[dict[str, np.ndarray]],
                     reference: list[np.ndarray], work: Path) -> list[tuple[str, float]]:
    """Output SQNR (dB) when ONLY that weight MatMul is 4-bit, least sensitive first."""
    scores = []
    for i, node in enumerate(nodes):
        int4_matmuls(src, work / f"int4_{i}.onnx", [node])
        scores.append((node, sqnr_db(reference, outputs(work / f"int4_{i}.onnx", batches))))
    return sorted(scores, key=lambda item: -item[1])


def choose_int4(scores: list[tuple[str, float]], int8_sqnr: float) -> list[str]:
    """Noise budget: quantization noise powers of separate layers add (roughly), so the 4-bit layers'
    noise, summed, may at most equal the all-int8 graph's noise (the mix loses <= ~3 dB of SQNR).
    Least sensitive layers are taken first."""
    budget, spent, chosen = 10 ** (-int8_sqnr / 10), 0.0, []
    for node, db in scores:
        spent += 10 ** (-db / 10)
        if spent > budget:
            break
        chosen.append(node)
    return chosen


def build_mix(src: Path, dst: Path, family: QuantFamily, graph: str, int4_nodes: list[str]) -> None:
    """`int4_nodes` as MatMulNBits, everything else int8 QDQ (base scheme)."""
    with tempfile.TemporaryDirectory() as tmp:
        rest = Path(tmp) / "rest.onnx"
        static(src, rest, family, graph, exclude=int4_nodes)
        int4_matmuls(rest, dst, int4_nodes)


def mixed_int4_int8(src: Path, dst: Path, family: QuantFamily, graph: str) -> RecipeOutput:
    floats = kept_in_float(family, graph)
    weight_matmuls = [n for n in _weight_matmuls(src) if n not in floats]
    if not weight_matmuls:  # e.g. a convolutional stage of a staged family: all int8
        static(src, dst, family, graph)
        return RecipeOutput(dst, ["no weight MatMul in this graph: all int8 QDQ (base scheme)"])
    batches, reference = _reference(src, family, graph)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        static(src, work / "int8.onnx", family, graph)
        int8_sqnr = sqnr_db(reference, outputs(work / "int8.onnx", batches))
        scores = int4_sensitivity(src, weight_matmuls, batches, reference, work)
        chosen = choose_int4(scores, int8_sqnr)
        build_mix(src, dst, family, graph, chosen)
    mix_sqnr = sqnr_db(reference, outputs(dst, batches))
    picked = ", ".join(f"{n} ({db:.1f} dB)" for n, db in scores if n in chosen) or "none"
    return RecipeOutput(dst, [f"{len(chosen)} of {len(weight_matmuls)} weight MatMuls in 4 bits (MatMulNBits, "
                              f"blocks of {INT4_BLOCK}; 4-bit-alone SQNR): {picked}; the rest int8 QDQ "
                              f"(base scheme); output SQNR all-int8 {int8_sqnr:.1f} dB -> mix {mix_sqnr:.1f} dB"])


def _weight_matmuls(path: Path) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.name: node.op_type for node in graph.node}
    return [name for name, kind in candidates(path).items() if kind == WEIGHT and ops[name] == "MatMul"]
