"""The segmentation and audio families as seen by the quantization recipes (exporters/quantize).

Segmentation is staged (backbone + gate, encoder layers, head): each stage is quantized with
the recipe, calibrated on the inputs the fp32 pipeline feeds it, and the staged loop is scored
end to end (mIoU on held-out scenes). Audio scores each embedder with exporters/audio_quality.py:
the probe fit once on fp32 embeddings, applied to the quantized graph's embeddings of 1,000
held-out windows (one window = 0.1%, where 36 clips made one clip 3%); where the audio corpus is built
(artifacts/audio-corpus), on the windows of its four held-out tasks instead (real recordings).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from exporters import audio as audio_export
from exporters import segmentation as seg_export
from exporters.audio_quality import CORPUS_TASKS, CORPUS_WINDOWS, CorpusBench, ProbeBench
from exporters.quantize.family import RecipeRefused
from exporters.quantize.schemes import nodes_before

CALIBRATION_BATCH = 16


class AudioQuantization:
    family = "audio"
    metric = "accuracy of the fp32-trained probe on 1,000 held-out windows"
    max_relative_loss = 0.01

    def __init__(self, repository: Path, embedder: str, corpus: Path | None = None):
        """`corpus`: a built audio corpus (models/audio/corpus): score on its held-out tasks (CorpusBench)
        instead of the synthetic windows."""
        self.family = f"audio-{embedder}"
        self._prefix = f"audio-{embedder}"
        self._fp32 = repository / f"{self._prefix}-fp32" / "1" / "model.onnx"
        self._bench: ProbeBench | CorpusBench | None = None
        self._corpus = corpus
        if corpus is not None:
            self.metric = (f"mean accuracy of the fp32-trained probes on the windows of the audio corpus's "
                           f"{len(CORPUS_TASKS)} held-out tasks' test clips ({', '.join(CORPUS_TASKS)}; at most "
                           f"{CORPUS_WINDOWS:,} windows each)")

    def graphs(self) -> dict[str, Path]:
        return {self._prefix: self._fp32}

    def calibration(self, graph: str, count: int) -> list[dict[str, np.ndarray]]:
        return list(audio_export.calibration_batches(count, CALIBRATION_BATCH))

    def quality(self, graphs: dict[str, Path]) -> dict[str, Any]:
        """Every figure of exporters/audio_quality.py (cosine, SQNR, probe accuracy, agreement, log-loss)."""
        if self._bench is None:
            self._bench = (ProbeBench.fit(self._fp32) if self._corpus is None
                           else CorpusBench.fit(self._fp32, self._corpus))
        return self._bench.score(graphs[self._prefix])

    def evaluate(self, graphs: dict[str, Path]) -> float:
        return float(self.quality(graphs)["accuracy"])

    def latency_inputs(self, graph: str, batch: int) -> dict[str, np.ndarray]:
        return next(audio_export.calibration_batches(1, batch))

    def float_nodes(self, graph: str) -> list[str]:
        """The log-mel front end (DFT and mel matmuls before the Log) stays float: quantizing the
        spectrogram costs ~40% probe accuracy (measured in reports/quantization.md before this rule)."""
        return nodes_before(self._fp32, "Log")

    def qat(self, graph: str, out: Path) -> Path:
        raise RecipeRefused("no QAT loop for the audio embedders yet")


class SegmentationQuantization:
    family = "segmentation"
    metric = "test mIoU"
    max_relative_loss = 0.01

    def __init__(self, repository: Path, checkpoint: Path):
        backbone_meta = json.loads((repository / "segmentation-backbone-fp32" / "1" / "meta.json").read_text())
        self.pipeline: dict[str, Any] = backbone_meta["pipeline"]
        self._n_layers = int(self.pipeline["n_layers"])
        self._first_exit = int(self.pipeline["exits"][0])
        self._n_classes = len(self.pipeline["class_names"])
        self._gate_after = int(self.pipeline.get("gate_after_layer", 0))  # > 0: the gate is its own stage
        names = seg_export.stage_names(self._n_layers, gate=self._gate_after > 0)
        gate = [names["gate"]] if "gate" in names else []
        self._paths = {self._prefix(n): repository / n / "1" / "model.onnx"
                       for n in [names["backbone"], *names["encoder_layers"], names["head"], *gate]}
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self._images, self._labels = seg_export.holdout_images(ckpt, 160)
        self._feeds: dict[str, list[dict[str, np.ndarray]]] = {}

    @staticmethod
    def _prefix(model_name: str) -> str:
        return model_name.removesuffix("-fp32")

    def graphs(self) -> dict[str, Path]:
        return dict(self._paths)

    def calibration_images(self, count: int) -> list[dict[str, np.ndarray]]:
        """Up to `count` {"image": batch} inputs of the backbone: synthetic calibration scenes (a user's model
        calibrates on its validation images instead, exporters/segmentation_user_quant.py)."""
        return list(itertools.islice(seg_export.calibration_batches(count, CALIBRATION_BATCH), count))

    def _stage_inputs(self, count: int) -> dict[str, list[dict[str, np.ndarray]]]:
        """Inputs every stage sees when the fp32 pipeline runs full depth on `calibration_images`."""
        if len(self._feeds.get("segmentation-backbone", [])) >= count:
            return self._feeds

        def session(key: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(self._paths[key]), providers=["CPUExecutionProvider"])
        feeds: dict[str, list[dict[str, np.ndarray]]] = {key: [] for key in self._paths}
        backbone = session("segmentation-backbone")
        layers = [session(f"segmentation-encoder{k}") for k in range(1, self._n_layers + 1)]
        for batch in self.calibration_images(count):
            feeds["segmentation-backbone"].append(batch)
            tokens, pixel_features = backbone.run(None, batch)[:2]
            for k, layer in enumerate(layers, start=1):
                feeds[f"segmentation-encoder{k}"].append({"tokens": tokens})
                tokens = layer.run(None, {"tokens": tokens})[0]
                if k == self._gate_after:
                    feeds["segmentation-gate"].append({"tokens": tokens})
            feeds["segmentation-head"].append({"tokens": tokens, "pixel_features": pixel_features})
        self._feeds = feeds
        return feeds

    def calibration(self, graph: str, count: int) -> list[dict[str, np.ndarray]]:
        return self._stage_inputs(count)[graph][:count]

    def evaluate(self, graphs: dict[str, Path]) -> float:
        staged = seg_export.StagedOnnx({
            "backbone": graphs["segmentation-backbone"], "head": graphs["segmentation-head"],
            "encoder_layers": [graphs[f"segmentation-encoder{k}"] for k in range(1, self._n_layers + 1)],
            "gate": graphs.get("segmentation-gate"),
        }, self._first_exit, self._gate_after)
        return float(seg_export.onnx_quality(staged, self._images, self._labels, self._n_classes)["miou"])

    def latency_inputs(self, graph: str, batch: int) -> dict[str, np.ndarray]:
        first = self._stage_inputs(1)[graph][0]
        return {name: np.resize(value, (batch, *value.shape[1:])) for name, value in first.items()}

    def qat(self, graph: str, out: Path) -> Path:
        raise RecipeRefused("no QAT loop for the segmentation stages yet")
