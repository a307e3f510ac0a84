"""The quantization gate on an Entropic Student trained on a user's own images (models/splitcompute/user_data.py).

A model trained on your images takes the defaults' path: the same export (exporters/splitcompute.py), the
same quantization rule, the same serving. That rule is `make quantize-report`'s, and it quantizes only
the families whose exporter defines `quant_families` (exporters/families.py): exporters/splitcompute.py
defines none, so the report prints "splitcompute not measured" and the default split computing models
ship as fp32 only. Why: the encoder is the device's bundle, and the codec tables it ships with are
versioned by a hash of its fp32 weights (a quantized encoder would send other symbols under another
codec); the service serves `splitcompute-server-fp32` by name (infersuite/services/splitcompute/
settings.py), so a quantized server graph would not be served either.

So no recipe runs on your model and nothing quantized is written, and the verdict says so where every
other family's verdicts go: `quantization_gate` in both fp32 models' meta.json and the report's
"Quantization gate" section, with the fp32 pair's test accuracy measured through the served path on
your test split (encoder graph, the codec's rounding, range coding and decoding, server graph). What
is enforced here as for every family: a run whose training did not finish is refused before anything
is exported. If the default family gains recipes, this gate refuses to run until it runs them too (it
would otherwise silently diverge from the defaults' path).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from exporters import splitcompute as splitcompute_exporter
from exporters.repository import record_quantization_gate
from exporters.ship import write_manifests
from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.edge import EdgeEncoder
from models.splitcompute.data import ShapeData

ENCODER, SERVER = "splitcompute-encoder-fp32", "splitcompute-server-fp32"
# What the checkpoint of a student that finished both stages and its evaluation carries (train_student).
FINISHED_STUDENT = ("beta", "support_radius", "valid_accuracy", "test_accuracy", "train_seconds")
NO_RECIPES = ("`make quantize-report` quantizes no split computing model: exporters/splitcompute.py defines no "
              "`quant_families()` (the report prints \"splitcompute not measured\"), so the default models ship "
              "fp32 only and so does yours. The encoder is the device bundle whose codec tables are versioned by "
              "a hash of its fp32 weights, and the service serves splitcompute-server-fp32 by name")


class UnfinishedTraining(Exception):
    """The run did not finish: nothing is exported from it."""


def default_recipes() -> list[str]:
    """The recipes `make quantize-report` runs on the default split computing family: none while
    exporters/splitcompute.py defines no `quant_families`. Once it does, this gate must run them on the
    user's splits as exporters/ctr_user_quant.py does for ctr; until then it refuses (NotImplementedError)
    rather than export a user's model on another path than the defaults'."""
    if getattr(splitcompute_exporter, "quant_families", None) is None:
        return []
    raise NotImplementedError("exporters/splitcompute.py now defines quant_families(): the default split computing "
                              "models are quantized, and exporters/splitcompute_user_quant.py must run the same "
                              "recipes on a user's model (calibration: the user's validation split; quality: "
                              "the user's test split) before it exports one")


def _load(path: Path) -> dict[str, Any]:
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file (training killed while saving) is unfinished too
        raise UnfinishedTraining(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:160]}): "
                                 "nothing is exported; train again to the end") from None
    return checkpoint


def _as_json(value: Any) -> Any:
    """As summary.json holds it (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(value, default=float))


def require_finished(run: Path) -> Path:
    """The default student of a finished run in `run` (models.splitcompute.train.run's --out) -> its path.

    `run` writes teacher.pt, then each student_beta<b>.pt, then summary.json last; a run stopped before
    its end leaves no summary.json, and a later run stopped in the same folder leaves the earlier
    summary.json beside checkpoints it did not record. Both are refused (UnfinishedTraining), as is a
    default checkpoint without the figures a finished student carries."""
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise UnfinishedTraining(f"training did not finish: {run} has no summary.json (written after the last "
                                 "beta): nothing is exported or quantized; train again to the end")
    try:
        summary = json.loads(summary_path.read_text())
        default, students, teacher = summary["default"], summary["students"], summary["teacher"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UnfinishedTraining(f"training did not finish: {summary_path} is incomplete ({exc!r}): nothing is "
                                 "exported or quantized; train again to the end") from None
    recorded = next((s for s in students if s.get("checkpoint") == default), None)
    checkpoint = run / str(default)
    if recorded is None or not checkpoint.is_file():
        raise UnfinishedTraining(f"training did not finish: {summary_path} names {default} as the default "
                                 f"student, but {'the file is missing' if recorded else 'records no such student'}"
                                 ": nothing is exported or quantized")
    metrics = _load(checkpoint).get("metrics", {})
    missing = [k for k in FINISHED_STUDENT if k not in metrics]
    if missing:
        raise UnfinishedTraining(f"training did not finish (the checkpoint {checkpoint.name} lacks "
                                 f"{', '.join(missing)}): nothing is exported or quantized; train again to the end")
    teacher_path = run / "teacher.pt"
    teacher_metrics = _load(teacher_path).get("metrics") if teacher_path.is_file() else None
    stale = [name for name, found, want in ((default, metrics, recorded), ("teacher.pt", teacher_metrics, teacher))
             if _as_json(found) != want]
    if stale:
        raise UnfinishedTraining(f"training did not finish: {', '.join(stale)} in {run} "
                                 f"{'is' if len(stale) == 1 else 'are'} not what summary.json records (a later run "
                                 "into the same folder stopped before its end?): nothing is exported or quantized; "
                                 "train again to the end")
    return checkpoint


def served_test_accuracy(written: dict[str, Path], data: ShapeData) -> dict[str, Any]:
    """The exported pair on `data`'s test split the way a device and the service run it: the encoder graph
    (onnxruntime), the codec's rounding, each image range-coded and decoded alone (checked equal to the
    symbols sent), the server graph on the decoded symbols."""
    encoder = EdgeEncoder(written["encoder"])
    codec = encoder.codec
    server = ort.InferenceSession(str(written["server"] / "model.onnx"), providers=["CPUExecutionProvider"])
    images, labels = data.split("test")
    latents = np.concatenate([encoder.latents(images[i:i + 64]) for i in range(0, len(images), 64)])
    decoded: list[np.ndarray] = []
    frame_bytes: list[int] = []
    for i, latent in enumerate(latents):
        symbols = codec.quantize(latent)
        body = codec.encode(symbols)
        received = codec.decode(body)
        if not np.array_equal(received, symbols):
            raise RuntimeError(f"test image {i}: the range coder did not return the symbols it was given")
        decoded.append(received)
        frame_bytes.append(len(body) + wire.HEADER_BYTES)
    batch = np.stack(decoded).astype(np.float32)
    probabilities = np.concatenate([server.run(["probabilities"], {"latent": batch[i:i + 64]})[0]
                                    for i in range(0, len(batch), 64)])
    return {"test_accuracy": float((probabilities.argmax(axis=1) == labels).mean()), "test_images": len(labels),
            "mean_frame_bytes": float(np.mean(frame_bytes))}


def gate(written: dict[str, Path], data: ShapeData, checkpoint: Path) -> dict[str, Any]:
    """The gate's verdict on the exported fp32 pair: the default family's recipes (none), the fp32 figures."""
    recipes = default_recipes()
    metrics = _load(checkpoint)["metrics"]
    fp32 = {**served_test_accuracy(written, data), "torch_test_accuracy": float(metrics["test_accuracy"]),
            "valid_accuracy": float(metrics["valid_accuracy"])}
    return {"metric": "test accuracy through the served path (encoder graph, codec, server graph)",
            "split": "your test split (calibration would use your validation split)",
            "recipes": recipes, "not_run": NO_RECIPES, "default": SERVER, "edge_bundle": ENCODER,
            "exported": [ENCODER, SERVER], "fp32": fp32}


def export_user_model(run: Path, repository: Path, command: str, quantize: bool = True,
                      data: ShapeData | None = None) -> dict[str, Any]:
    """A finished run's default student (refused otherwise, before anything is written) exported as the
    defaults are, then (unless `quantize` is False) the gate -> {"checkpoint", "exported", "quantization_gate"}.
    Every model written gets a manifest.json as `exporters.ship` records it; with the gate, both meta.json
    files carry its verdict under `quantization_gate`."""
    checkpoint = require_finished(run)
    if quantize:
        default_recipes()  # refused before anything is written when the defaults' path has moved on
    written = splitcompute_exporter.export_splitcompute(checkpoint, repository)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "exported": [ENCODER, SERVER], "quantization_gate": None}
    if quantize:
        if data is None:
            from models.splitcompute.user_data import data_config_from_dict, load_data

            data = load_data(data_config_from_dict(_load(checkpoint)["data_config"]))
        result["quantization_gate"] = gate(written, data, checkpoint)
        for version_dir in written.values():
            record_quantization_gate(version_dir, result["quantization_gate"])
    write_manifests(repository, [version_dir.parent.name for version_dir in written.values()], command)
    return result


def render_gate(result: dict[str, Any] | None, why_not: str = "") -> str:
    """The report's "Quantization gate" section."""
    if result is None:
        return f"\n## Quantization gate\n\nNot run: {why_not}.\n"
    fp32 = result["fp32"]
    lines = ["", "## Quantization gate", "",
             f"No recipe ran: {result['not_run']}.", "",
             f"Exported: {result['edge_bundle']} (the edge bundle: graph + codec tables) and {result['default']} "
             "(served), both fp32; each meta.json records this verdict under `quantization_gate`.", "",
             "| model | recipe | test accuracy, served path | test accuracy, torch at training | valid accuracy | "
             "mean frame bytes | test images | verdict | exported |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| {result['edge_bundle']} + {result['default']} | fp32 | {fp32['test_accuracy']:.4f} | "
             f"{fp32['torch_test_accuracy']:.4f} | {fp32['valid_accuracy']:.4f} | {fp32['mean_frame_bytes']:.1f} | "
             f"{fp32['test_images']} | the reference (no recipe to judge against it) | yes |", "",
             "Served path: the encoder graph in onnxruntime, the codec's rounding, each image range-coded and "
             "decoded alone (checked equal), the server graph on the decoded symbols; frame bytes include the "
             f"{wire.HEADER_BYTES}-byte header."]
    return "\n".join(lines) + "\n"


def write_gate_section(report: Path, section: str) -> None:
    """Puts `section` into the Markdown report, in place of an earlier run's section (else at its end)."""
    text = report.read_text() if report.is_file() else ""
    pattern = re.compile(r"\n## Quantization gate\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n"), text, count=1)
    else:
        text = text.rstrip("\n") + "\n" + section if text.strip() else section.lstrip("\n")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text if text.endswith("\n") else text + "\n")
