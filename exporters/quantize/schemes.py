"""int8 static QDQ schemes and the helpers every recipe shares (calibration reader, ORT's
pre-processing, output SQNR).

Survey sections: III-B/C/D (uniform, symmetric/asymmetric, static ranges and their calibration),
III-E (per-channel granularity). A `StaticScheme` names every choice, so an ablation can change
exactly one of them and the report can attribute its effect.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator
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
    quantize_static,
)
from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data

from exporters.quantize.family import QuantFamily

log = logging.getLogger(__name__)
CALIBRATION_BATCHES = 16
QUANTIZABLE = ("MatMul", "Gemm", "Conv")
ENTROPY_BINS = 512
TENSORRT_BINS = 2048  # TensorRT's histogram of |x|
TENSORRT_LEVELS = 128  # int8's positive levels: the KL search merges the kept bins into this many
TENSORRT_CALIBRATION_BATCHES = 64  # "at least 64 batches" (issue 27; TensorRT's guidance is ~500 images)


@dataclass
class RecipeOutput:
    path: Path
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StaticScheme:
    """One int8 static QDQ scheme; the ablations change exactly one field of BASE_SCHEME.

    Symmetry and storage type are separate factors: a symmetric range on a uint8 grid puts the zero
    point at 128 (the same grid as int8 with zero point 0, shifted), so `symmetric_*` alone changes
    the rounding grid and never the kernel's operand types; `int8_*` changes the storage type (ORT
    only pairs int8 activations with int8 weights)."""

    per_channel: bool = False  # one weight scale per output channel instead of one per tensor
    symmetric_weights: bool = False  # weight range centred on 0 (zero point fixed), else min..max
    symmetric_activations: bool = False  # activation range centred on 0, else calibrated min..max
    int8_weights: bool = False  # signed int8 weight storage, else uint8
    int8_activations: bool = False  # signed int8 activation storage, else uint8 (needs int8_weights)
    # How activation ranges are chosen: one of onnxruntime's calibrators, or TENSORRT_ENTROPY (entropy
    # calibration as TensorRT defines it, `tensorrt_entropy_threshold`).
    calibration: CalibrationMethod | str = CalibrationMethod.MinMax

    @property
    def tensorrt_entropy(self) -> bool:
        return self.calibration == TENSORRT_ENTROPY

    @property
    def ort_calibration(self) -> CalibrationMethod:
        """The method quantize_static is told (TensorRT's ranges reach it as an entropy calibration cache)."""
        return CalibrationMethod.Entropy if self.tensorrt_entropy else CalibrationMethod(self.calibration)

    def describe(self) -> str:
        def tensor(int8: bool, symmetric: bool) -> str:
            return f"{'int8' if int8 else 'uint8'} {'symmetric' if symmetric else 'asymmetric'}"

        calibration = CALIBRATION_NAMES[self.calibration]
        return (f"QDQ; weights {tensor(self.int8_weights, self.symmetric_weights)} "
                f"{'per-channel' if self.per_channel else 'per-tensor'}; activations "
                f"{tensor(self.int8_activations, self.symmetric_activations)}; {calibration} calibration")


TENSORRT_ENTROPY = "tensorrt-entropy"
CALIBRATION_NAMES: dict[CalibrationMethod | str, str] = {
    CalibrationMethod.MinMax: "min-max", CalibrationMethod.Percentile: "99.99th percentile",
    CalibrationMethod.Entropy: "entropy (KL)", CalibrationMethod.Distribution: "distribution",
    TENSORRT_ENTROPY: f"TensorRT's entropy (KL over a {TENSORRT_BINS:,}-bin |x| histogram, "
                      f"{TENSORRT_CALIBRATION_BATCHES} batches)"}
BASE_SCHEME = StaticScheme()
BASE_RECIPE = "int8-static-minmax"


@dataclass(frozen=True)
class Ablation:
    factor: str  # the one factor changed, in words
    scheme: StaticScheme
    reference: str  # the recipe it differs from in exactly that factor


# Single-factor ablations. Per-channel is measured against per-tensor SYMMETRIC weights: onnxruntime
# always quantizes per-channel weights symmetrically (its QLinear kernels need one zero point per tensor).
ABLATIONS: dict[str, Ablation] = {
    "abl-sym-weights": Ablation("weights symmetric", StaticScheme(symmetric_weights=True), BASE_RECIPE),
    "abl-per-channel": Ablation("weights per-channel", StaticScheme(per_channel=True, symmetric_weights=True),
                                "abl-sym-weights"),
    "abl-sym-activations": Ablation("activations symmetric", StaticScheme(symmetric_activations=True), BASE_RECIPE),
    "abl-int8-weights": Ablation("weights stored int8", StaticScheme(int8_weights=True), BASE_RECIPE),
    "abl-percentile": Ablation("percentile calibration", StaticScheme(calibration=CalibrationMethod.Percentile),
                               BASE_RECIPE),
    "abl-entropy": Ablation("entropy calibration", StaticScheme(calibration=CalibrationMethod.Entropy), BASE_RECIPE),
}
# TensorRT's explicit-quantization form; changes six factors at once (the ablations separate them).
PER_CHANNEL_SCHEME = StaticScheme(per_channel=True, symmetric_weights=True, symmetric_activations=True,
                                  int8_weights=True, int8_activations=True, calibration=CalibrationMethod.Percentile)
PER_CHANNEL_RECIPE = "int8-static-perchannel"
# Entropy calibration in the form TensorRT uses it (symmetric int8 activations): one factor changed against
# the per-channel recipe, its calibration (99.99th percentile there).
ABLATIONS["abl-entropy-tensorrt"] = Ablation(
    "TensorRT's entropy calibration",
    StaticScheme(per_channel=True, symmetric_weights=True, symmetric_activations=True, int8_weights=True,
                 int8_activations=True, calibration=TENSORRT_ENTROPY),
    PER_CHANNEL_RECIPE)
SCHEMES: dict[str, StaticScheme] = {BASE_RECIPE: BASE_SCHEME, PER_CHANNEL_RECIPE: PER_CHANNEL_SCHEME,
                                    **{n: a.scheme for n, a in ABLATIONS.items()}}


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def preprocess(src: Path, work: Path) -> Path:
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


def quantize_with_scheme(src: Path, dst: Path, batches: list[dict[str, np.ndarray]], scheme: StaticScheme,
                         exclude: list[str] | None = None) -> None:
    """int8 static QDQ of MatMul/Gemm/Conv (activation x activation MatMuls included) under `scheme`."""
    extra = {"ActivationSymmetric": scheme.symmetric_activations, "WeightSymmetric": scheme.symmetric_weights,
             "CalibPercentile": 99.99, "CalibMovingAverage": False}
    with tempfile.TemporaryDirectory() as tmp:
        model = preprocess(src, Path(tmp))
        cache = ((_tensorrt_ranges if scheme.tensorrt_entropy else _entropy_ranges)(model, batches, Path(tmp))
                 if scheme.ort_calibration == CalibrationMethod.Entropy else None)
        quantize_static(str(model), str(dst), None if cache else _Reader(batches), quant_format=QuantFormat.QDQ,
                        calibration_cache_path=cache,
                        per_channel=scheme.per_channel,
                        activation_type=QuantType.QInt8 if scheme.int8_activations else QuantType.QUInt8,
                        weight_type=QuantType.QInt8 if scheme.int8_weights else QuantType.QUInt8,
                        calibrate_method=scheme.ort_calibration, op_types_to_quantize=list(QUANTIZABLE),
                        nodes_to_exclude=exclude or [], extra_options=extra)


def _entropy_ranges(model: Path, batches: list[dict[str, np.ndarray]], work: Path) -> Path:
    """Entropy (KL) ranges over a 512-bin histogram, written as an ORT calibration cache.

    Through quantize_static, ORT's entropy calibrator builds 128 histogram bins for 128 quantized
    bins: the KL search then has a single candidate, the full range, and returns min-max ranges
    (measured: identical scales). TensorRT's procedure uses 2,048 bins; ORT's pure-Python KL search
    over 2,048 bins took ~4 minutes per segmentation stage on this machine, 512 gives 192 candidate
    thresholds per tensor."""
    calibrator = create_calibrator(model, list(QUANTIZABLE), augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": 128})
    calibrator.collect_data(_Reader(batches))
    save_tensors_data(calibrator.compute_data(), work / "entropy_ranges.json")
    return work / "entropy_ranges.json"


def tensorrt_entropy_threshold(hist: np.ndarray, edges: np.ndarray, levels: int = TENSORRT_LEVELS) -> float:
    """The |x| threshold T of TensorRT's entropy calibration, from a histogram of |x| (`edges` as np.histogram's).

    For every candidate cut i from `levels` to the last bin: the reference distribution P is the first i bins
    with all the counts beyond the cut added to its last bin (clipping); Q is those i bins merged into `levels`
    groups and spread back evenly over each group's non-empty bins (what int8 can represent); the cut with the
    smallest KL(P || Q) wins and T is its upper edge. Values in |x| > T saturate to +-127 at serving.
    The first bin (|x| about 0: ReLU zeros, padded positions, masks) is counted as the second, as NVIDIA's
    own histogram calibrator does: otherwise its mass alone decides the cut and clips values that matter."""
    hist = hist.astype(np.float64)
    if hist.size > 1:
        hist[0] = hist[1]
    nonzero = np.flatnonzero(hist)
    if nonzero.size == 0:
        return float(edges[-1])
    last = int(nonzero[-1]) + 1  # bins past the last non-empty one change nothing
    if last <= levels:
        return float(edges[last])
    best_kl, best_cut = math.inf, last
    for cut in range(levels, last + 1):
        reference = hist[:cut].copy()
        reference[-1] += hist[cut:].sum()
        kept = hist[:cut]
        group = np.minimum((np.arange(cut) * levels) // cut, levels - 1)  # the int8 level of each kept bin
        mass = np.bincount(group, weights=kept, minlength=levels)
        occupied = np.bincount(group, weights=kept > 0, minlength=levels)
        spread = np.divide(mass, occupied, out=np.zeros(levels), where=occupied > 0)
        expanded = np.where(kept > 0, spread[group], 0.0)
        p, q = reference / reference.sum(), expanded / max(expanded.sum(), 1e-300)
        support = p > 0
        if np.any(q[support] == 0):  # P has mass where Q has none (its last, clipping bin): smooth Q there
            q = np.where(support & (q == 0), 1e-10, q)
            q = q / q.sum()
        kl = float(np.sum(p[support] * np.log(p[support] / q[support])))
        if kl < best_kl:
            best_kl, best_cut = kl, cut
    return float(edges[best_cut])


def _tensorrt_ranges(model: Path, batches: list[dict[str, np.ndarray]], work: Path) -> Path:
    """TensorRT's entropy calibration as an ORT calibration cache: onnxruntime's calibrator collects each
    quantized tensor's |x| histogram (its percentile collector with symmetric ranges, TENSORRT_BINS bins; bins
    widen as later batches raise the maximum), `tensorrt_entropy_threshold` picks T, the range is (-T, +T)."""
    calibrator = create_calibrator(model, list(QUANTIZABLE), augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Percentile,
                                   extra_options={"num_bins": TENSORRT_BINS, "symmetric": True})
    calibrator.collect_data(_Reader(batches))
    thresholds = {}
    for name, (hist, edges, *_rest) in calibrator.collector.histogram_dict.items():
        threshold = np.float32(tensorrt_entropy_threshold(np.asarray(hist), np.asarray(edges)))
        thresholds[name] = TensorData(lowest=-threshold, highest=threshold)
    save_tensors_data(TensorsData(CalibrationMethod.Entropy, thresholds), work / "tensorrt_ranges.json")
    return work / "tensorrt_ranges.json"


def kept_in_float(family: QuantFamily | None, graph: str) -> list[str]:
    """Nodes the family asks to keep in float in every recipe (e.g. a signal-processing front end)."""
    hook = getattr(family, "float_nodes", None)
    return list(hook(graph)) if hook is not None else []


def static(src: Path, dst: Path, family: QuantFamily, graph: str, scheme: StaticScheme = BASE_SCHEME,
           exclude: list[str] | None = None) -> None:
    """`quantize_with_scheme` on the family's calibration batches, its float nodes kept in float."""
    count = TENSORRT_CALIBRATION_BATCHES if scheme.tensorrt_entropy else CALIBRATION_BATCHES
    quantize_with_scheme(src, dst, family.calibration(graph, count), scheme,
                         [*(exclude or []), *kept_in_float(family, graph)])


def nodes_before(path: Path, op_type: str) -> list[str]:
    """Quantizable nodes that come before the first `op_type` node (topological order)."""
    names: list[str] = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type == op_type:
            return names
        if node.op_type in QUANTIZABLE:
            names.append(node.name)
    return []


def sqnr_db(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio of all outputs together, in dB (NaN output -> -inf)."""
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
    noise = sum(float(np.sum((r.astype(np.float64) - c) ** 2)) for r, c in zip(reference, candidate, strict=True))
    if not math.isfinite(noise):
        return float("-inf")
    return 10 * math.log10(signal / noise) if noise > 0 else float("inf")


def outputs(path: Path, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [out for batch in batches for out in session.run(None, batch)]
