"""QAT vs PTQ vs an fp32 fine-tune control on the study's DIN (reports/ctr_quality.md).

Per seed, from the study's DIN-Dice checkpoint (models/ctr/study.py, "dice" part), every graph
exported in the served rows layout and scored by onnxruntime on the test users:

- fp32: the checkpoint as trained;
- fp32 control: fine-tuned with the same loop, epochs, batches and learning rate as QAT, without
  fake quantization (models.ctr.qat.finetune);
- PTQ: the int8-static-minmax recipe (exporters/quantize/recipes.py) on fp32, and on the control;
- QAT deployed: fine-tuned with fake quantizers in the int8-static-minmax scheme at every matrix
  product (including the activation unit's split first layer and the attention-weighted sum),
  exported with the observers' own scales and zero points (no re-calibration);
- QAT re-calibrated: the same fine-tuned weights through the int8-static-minmax conversion with a
  fresh min-max calibration (what the int8-qat recipe does with a float QAT graph).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from exporters.ctr_quant import CtrQuantization, onnx_scores
from exporters.onnx_export import export_onnx
from exporters.quantize.recipes import RECIPES
from models.ctr.data import ClickData, make_click_data
from models.ctr.din import DeepInterestNetwork
from models.ctr.din_rows import DinRows
from models.ctr.metrics import per_user_auc, score_report
from models.ctr.qat import finetune, freeze, strip
from models.ctr.study import TRAIN, world
from models.ctr.train import read_checkpoint

SCHEME = "int8-static-minmax"
EPOCHS = 2  # fine-tune epochs, QAT and control alike
LR = 5e-4  # a tenth of the training learning rate


def _scores(path: Path, data: ClickData) -> dict[str, Any]:
    rows, scores = onnx_scores(path, data, data.test_users)
    labels, users = data.labels[rows], data.user_index[rows]
    return {**score_report(labels, scores, users),
            "per_user": {str(u): list(v) for u, v in per_user_auc(labels, scores, users).items()}}


def _tuned(model: DeepInterestNetwork, data: ClickData, seed: int, scheme: str | None) -> DeepInterestNetwork:
    with torch.enable_grad():
        return finetune(copy.deepcopy(model), data, EPOCHS, LR, scheme, TRAIN, seed=seed)


def qat_seed(checkpoint: Path, data: ClickData, seed: int) -> dict[str, dict[str, Any]]:
    """{graph name: test scores} for one seed's checkpoint."""
    model, _ = read_checkpoint(checkpoint)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_onnx(DinRows(model), work / "fp32.onnx")
        family = CtrQuantization(checkpoint, work, data=data, fp32=fp32)
        ptq = RECIPES[SCHEME]

        def quantized(src: Path, name: str) -> Path:
            return ptq(src, work / f"{name}.onnx", family, "din").path

        control = export_onnx(DinRows(_tuned(model, data, seed, None)), work / "control.onnx")
        qat = _tuned(model, data, seed, SCHEME)
        deployed = export_onnx(DinRows(freeze(copy.deepcopy(qat))), work / "qat_qdq.onnx")
        qat_float = export_onnx(DinRows(strip(qat)), work / "qat_float.onnx")
        graphs = {"fp32": fp32, "fp32_control": control, "ptq": quantized(fp32, "ptq"),
                  "ptq_control": quantized(control, "ptq_control"), "qat_deployed": deployed,
                  "qat_recalibrated": quantized(qat_float, "qat_recalibrated")}
        for name, path in graphs.items():
            results[name] = _scores(path, data)
    return results


def run_qat(seeds: list[int], out: Path, quick: bool = False, log: Any = print,
            train_missing: bool = True) -> dict[str, Any]:
    """Every seed (cached in <out>/runs/qat-s<seed>.json) -> {"records", "settings"}."""
    torch.set_num_threads(1)
    data = make_click_data(world("dice", quick))
    settings = {"scheme": SCHEME, "epochs": EPOCHS, "lr": LR, "train": asdict(TRAIN)}
    records = []
    started = time.perf_counter()
    for seed in seeds:
        checkpoint = out / "checkpoints" / f"din_dice-s{seed}.pt"
        if not checkpoint.is_file() and not train_missing:
            continue
        path = out / "runs" / f"qat-s{seed}.json"
        key = json.loads(json.dumps({**settings, "seed": seed, "world": asdict(data.config),
                                     "checkpoint_mtime": checkpoint.stat().st_mtime}))
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved.get("key") != key and not train_missing:
            continue
        if saved.get("key") != key:
            results = qat_seed(checkpoint, data, seed)
            saved = {"key": key, "records": [{"name": n, "seed": seed, "test": r} for n, r in results.items()]}
            path.write_text(json.dumps(saved) + "\n")
        records += saved["records"]
        log(f"qat: seed {seed} done ({time.perf_counter() - started:.0f} s)")
    return {"records": records, "settings": settings}
