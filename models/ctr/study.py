"""The DIN study behind reports/ctr_quality.md: several seeds, training to a validation plateau.

Two synthetic worlds (models/ctr/data.py), smaller than the served model's so that seeds and
variants fit on a small CPU:

- "dice": the default world's 600 items (each seen hundreds of times), 7,000 users; the
  BaseModel, DIN with PReLU and DIN with Dice, trained on shuffled unbucketed batches, plus Dice
  trained on length-bucketed batches (the old default), evaluated with its running moments and,
  with the same weights, with moments re-estimated on shuffled unbucketed training batches.
- "reg": a long tail, 50,000 items drawn by Zipf(1) exposure (most seen fewer than 5 times), and
  the paper's regulariser comparison (section 6.5) on DIN: none, L2, dropout, MBA.

Every run is cached as JSON under <out>/runs/ (its key holds every setting), so an interrupted
study resumes and a finished one re-renders without training. Each run keeps the test users'
per-user AUCs for the paired bootstrap in models/ctr/report.py.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.ctr.data import ClickData, ClickDataConfig, make_click_data
from models.ctr.metrics import per_user_auc, score_report
from models.ctr.train import TrainConfig, predict, reestimate_dice, save_checkpoint, train_variant

WORLDS = {
    "dice": ClickDataConfig(n_users=7000, max_history=30, valid_fraction=0.15, test_fraction=0.4),
    "reg": ClickDataConfig(n_users=7000, max_history=30, valid_fraction=0.15, test_fraction=0.4,
                           n_items=50_000, item_zipf=1.0),
}
QUICK_WORLDS = {
    "dice": ClickDataConfig(n_users=400, n_items=60, n_categories=6, max_history=12, test_fraction=0.3),
    "reg": ClickDataConfig(n_users=400, n_items=2000, n_categories=6, max_history=12, test_fraction=0.3,
                           item_zipf=1.0),
}
MODEL = {"item_dim": 8, "category_dim": 4, "attention_hidden": 16, "mlp_hidden": (64, 32)}
# Early stopping after 3 epochs without a better validation GAUC; batches of 32 users at lr 5e-3
# reach the plateau in ~10-15 epochs of this world.
TRAIN = TrainConfig(epochs=20, patience=3, batch_size=32, lr=5e-3, bucket_by_length=False)
# Plain L2 is applied to every row in every batch (~100 per epoch here); 0.05 / 100 gives a row seen
# in one batch per epoch the same per-epoch penalty as MBA's lam / n_j gives a rare row.
L2_LAMBDA = 5e-4


@dataclass(frozen=True)
class Run:
    name: str  # row of the report
    variant: str  # models.ctr.din.VARIANTS
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    reestimated: str | None = None  # also score these weights with re-estimated Dice moments


PARTS: dict[str, list[Run]] = {
    "dice": [
        Run("din_dice", "din_dice"),
        Run("din_prelu", "din_prelu"),
        Run("base", "base"),
        Run("din_dice_bucketed", "din_dice", {"bucket_by_length": True}, reestimated="din_dice_bucketed_reestimated"),
    ],
    "reg": [Run(f"reg_{kind}", "din_prelu", {"regulariser": kind, "l2_lambda": L2_LAMBDA})
            for kind in ("none", "l2", "dropout", "mba")],
}


def world(part: str, quick: bool = False) -> ClickDataConfig:
    return (QUICK_WORLDS if quick else WORLDS)[part]


def train_config(run: Run, seed: int, quick: bool = False) -> TrainConfig:
    cfg = replace(TRAIN, seed=seed, **run.train)
    return replace(cfg, epochs=2, patience=None) if quick else cfg


def test_scores(model: torch.nn.Module, data: ClickData) -> dict[str, Any]:
    """Test AUC/GAUC and the per-user AUCs {user: [impressions, auc]} of a model."""
    rows, scores = predict(model, data, data.test_users)  # type: ignore[arg-type]
    labels, users = data.labels[rows], data.user_index[rows]
    return {**score_report(labels, scores, users),
            "per_user": {str(u): list(v) for u, v in per_user_auc(labels, scores, users).items()}}


def oracle_scores(data: ClickData) -> dict[str, Any]:
    rows = data.impressions_of(data.test_users)
    labels, users = data.labels[rows], data.user_index[rows]
    return {**score_report(labels, data.click_probability[rows], users)}


def _cached(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("key") == json.loads(json.dumps(key)) else None


def run_once(run: Run, seed: int, data: ClickData, out: Path, quick: bool = False,
             train_missing: bool = True) -> list[dict[str, Any]]:
    """Train one run with one seed (or load it from <out>/runs/); -> its result records (none
    when it is not cached and `train_missing` is off)."""
    cfg = train_config(run, seed, quick)
    key = {"run": asdict(run), "seed": seed, "world": asdict(data.config), "train": asdict(cfg), "model": MODEL}
    path = out / "runs" / f"{run.name}-s{seed}.json"
    cached = _cached(path, key)
    if cached is not None:
        return list(cached["records"])
    if not train_missing:
        return []
    model, metrics = train_variant(run.variant, data, cfg, progress=False, **MODEL)
    save_checkpoint(out / "checkpoints" / f"{run.name}-s{seed}.pt", model, metrics, data)
    records = [{"name": run.name, "seed": seed, "metrics": metrics, "test": test_scores(model, data)}]
    if run.reestimated:
        started = time.perf_counter()
        same_weights = copy.deepcopy(model)
        reestimate_dice(same_weights, data, cfg, seed=seed)
        extra = {**metrics, "valid_gauc": score_report(*_valid(same_weights, data))["gauc"],
                 "reestimate_seconds": time.perf_counter() - started}
        records.append({"name": run.reestimated, "seed": seed, "metrics": extra,
                        "test": test_scores(same_weights, data)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "records": records}) + "\n")
    return records


def _valid(model: torch.nn.Module, data: ClickData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, scores = predict(model, data, data.valid_users)  # type: ignore[arg-type]
    return data.labels[rows], scores, data.user_index[rows]


def run_part(part: str, seeds: list[int], out: Path, quick: bool = False,
             log: Any = print, train_missing: bool = True) -> dict[str, Any]:
    """Every run of a part for every seed -> {"world", "oracle", "records", ...}."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = make_click_data(world(part, quick))
    records: list[dict[str, Any]] = []
    for seed in seeds:
        for run in PARTS[part]:
            records += run_once(run, seed, data, out, quick, train_missing)
            log(f"{part}: {run.name} seed {seed} done ({time.perf_counter() - started:.0f} s)")
    frequency = data.id_frequencies(data.train_users)["item"][1:]
    return {"world": asdict(data.config), "model": MODEL, "train": asdict(TRAIN), "oracle": oracle_scores(data),
            "records": records, "test_users": len(data.test_users), "train_users": len(data.train_users),
            "test_impressions": len(data.impressions_of(data.test_users)),
            "items_seen_under_5": float((frequency[frequency > 0] < 5).mean()),
            "items_seen": int((frequency > 0).sum()), "wall_seconds": time.perf_counter() - started}
