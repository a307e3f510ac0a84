"""Train and compare the Deep Interest Network variants on the synthetic click log.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018: Adam on the
binary cross-entropy (eq. 1) plus mini-batch aware regularisation (eq. 4); models are compared
by GAUC (eq. 10) and RelaImpr (eq. 11) on held-out users, next to the oracle that scores with
the true click probability.

    python -m models.ctr.train --out artifacts/ctr            # all three variants + report
    python -m models.ctr.train --out /tmp/ctr --quick         # a smoke run in seconds
    python -m models.ctr.train --data clicks.csv --out artifacts/my_ctr --repository my_models
                                                              # your click log (models/ctr/user_data.py)
    python -m models.ctr.train --data reviews_Books_5.json.gz --meta meta_Books.json.gz --out artifacts/my_ctr
                                                              # Amazon reviews (models/ctr/amazon.py)
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models.ctr.data import ClickData, ClickDataConfig, iterate_batches, make_click_data
from models.ctr.din import (
    VARIANTS,
    DeepInterestNetwork,
    mini_batch_aware_l2,
    reestimate_dice_statistics,
    variant_config,
)
from models.ctr.metrics import per_user_auc, rela_impr, score_report

INPUT_KEYS = DeepInterestNetwork.input_names


Regulariser = Literal["none", "l2", "dropout", "mba"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8  # passes over the training users (the most, when `patience` is set)
    batch_size: int = 64  # users per mini-batch (each with all of its candidates)
    lr: float = 2e-3  # Adam learning rate
    regulariser: Regulariser = "mba"  # paper section 6.5's comparison: none, l2, dropout, mba
    mba_lambda: float = 0.05  # weight of the mini-batch aware L2 (paper eq. 4)
    l2_lambda: float = 1e-3  # weight of plain L2 on every embedding row, every batch
    id_dropout: float = 0.5  # "dropout": share of behaviour item ids discarded per sample
    eval_batch_size: int = 512  # users per batch at evaluation
    seed: int = 0  # model initialisation and batch order
    bucket_by_length: bool = True  # batch users of similar history length: less padding
    patience: int | None = None  # early stopping: epochs without a better validation GAUC
    dice_stats: Literal["running", "reestimate"] = "running"  # Dice moments at evaluation
    reestimate_users: int = 2000  # training users (shuffled, unbucketed) for "reestimate"
    # sparse embedding gradients, lazy Adam on the tables (`make_optimizer`): a step moves only its batch's rows
    sparse_embeddings: bool = False


class Optimizers:
    """Several optimizers stepped as one (torch.optim.SparseAdam takes only sparse gradients, Adam only dense)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor the optimizers keep between steps (Adam's moments)."""
        return [value for optimizer in self.optimizers for state in optimizer.state.values()
                for value in state.values() if isinstance(value, torch.Tensor)]


def make_optimizer(model: DeepInterestNetwork, cfg: TrainConfig, lr: float | None = None) -> Optimizers:
    """Adam at `lr` (default `cfg.lr`) on every parameter; with `cfg.sparse_embeddings`, the embedding tables
    switch to sparse gradients under torch.optim.SparseAdam ("lazy" Adam: only the rows a batch looks up, and
    their moments, move) and Adam keeps the dense layers. That is the setting of the paper's section 5.1: with
    millions of ids a step touches a few thousand rows, and MBA (eq. 4) regularises just those; plain L2 on every
    row gives every row a gradient at every step, so it is refused with sparse tables."""
    rate = cfg.lr if lr is None else lr
    if not cfg.sparse_embeddings:
        return Optimizers(torch.optim.Adam(model.parameters(), lr=rate))
    if cfg.regulariser == "l2":
        raise ValueError("sparse_embeddings with regulariser 'l2': L2 on every row makes every row's gradient "
                         "non-zero at every step; use 'mba' (eq. 4, the rows in the batch) or dense tables")
    tables = list(model.embedding_tables().values())
    for table in tables:
        table.sparse = True
    sparse = {id(table.weight) for table in tables}
    return Optimizers(torch.optim.SparseAdam([table.weight for table in tables], lr=rate),
                      torch.optim.Adam([p for p in model.parameters() if id(p) not in sparse], lr=rate))


def frequency_tensors(data: ClickData) -> dict[str, torch.Tensor]:
    counts = data.id_frequencies(data.train_users)
    return {name: torch.from_numpy(c).float() for name, c in counts.items()}


def reestimate_dice(model: DeepInterestNetwork, data: ClickData, cfg: TrainConfig, seed: int = 0) -> int:
    """Dice moments re-estimated on `cfg.reestimate_users` shuffled training users in unbucketed
    batches of `cfg.batch_size` (models.ctr.din.reestimate_dice_statistics)."""
    rng = np.random.default_rng(seed)
    users = rng.permutation(data.train_users)[: cfg.reestimate_users]
    batches = iterate_batches(data, users, cfg.batch_size, rng)
    return reestimate_dice_statistics(model, (tuple(b[k] for k in INPUT_KEYS) for b in batches))


@torch.no_grad()
def predict(
    model: DeepInterestNetwork, data: ClickData, users: np.ndarray, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities of every impression of `users` -> (impression rows, scores)."""
    model.eval()
    rows, scores = [], []
    for batch in iterate_batches(data, users, batch_size, bucket_by_length=True):
        probability, _ = model(*(batch[k] for k in INPUT_KEYS))  # (B, N)
        valid = batch["candidate_mask"] > 0
        rows.append(batch["impression_rows"][valid].numpy())
        scores.append(probability[valid].numpy())
    return np.concatenate(rows), np.concatenate(scores)


def evaluate(model: DeepInterestNetwork, data: ClickData, users: np.ndarray, batch_size: int = 512) -> dict[str, float]:
    """{"auc", "gauc"} of `model` over the impressions of `users`."""
    rows, scores = predict(model, data, users, batch_size)
    return score_report(data.labels[rows], scores, data.user_index[rows])


def oracle_report(data: ClickData, users: np.ndarray) -> dict[str, float]:
    """AUC/GAUC when scoring with the true click probability: the attainable ceiling."""
    rows = data.impressions_of(users)
    return score_report(data.labels[rows], data.click_probability[rows], data.user_index[rows])


def regularisation(model: DeepInterestNetwork, batch: dict[str, torch.Tensor],
                   frequencies: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    """The embedding penalty of `cfg.regulariser`: MBA (eq. 4) on the rows in the batch, or
    plain L2 on every row of every table; zero for "none" and "dropout"."""
    if cfg.regulariser == "mba":
        ids = {
            "item": torch.cat([batch["history_items"].flatten(), batch["candidate_items"].flatten()]),
            "category": torch.cat([batch["history_categories"].flatten(), batch["candidate_categories"].flatten()]),
        }
        return mini_batch_aware_l2(model, ids, frequencies, cfg.mba_lambda)
    if cfg.regulariser == "l2":
        rows = [t.weight[1:].square().sum() for t in model.embedding_tables().values()]
        return cfg.l2_lambda * torch.stack(rows).sum()
    return torch.zeros(())


def drop_ids(batch: dict[str, torch.Tensor], rate: float, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Paper section 6.5's dropout: each behaviour's item id is discarded (set to padding id 0,
    a zero embedding) with probability `rate`; its category id and the mask are kept."""
    keep = torch.from_numpy(rng.random(tuple(batch["history_items"].shape)) >= rate)
    return {**batch, "history_items": batch["history_items"] * keep}


def train_step(model: DeepInterestNetwork, optimizer: Optimizers, batch: dict[str, torch.Tensor],
               frequencies: dict[str, torch.Tensor], cfg: TrainConfig, rng: np.random.Generator) -> float:
    """One optimizer step on the masked BCE (eq. 1) plus the configured regulariser."""
    if cfg.regulariser == "dropout":
        batch = drop_ids(batch, cfg.id_dropout, rng)
    logits, _ = model.logits(*(batch[k] for k in INPUT_KEYS))  # (B, N)
    mask = batch["candidate_mask"]
    bce = F.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="none")
    loss = (bce * mask).sum() / mask.sum() + regularisation(model, batch, frequencies, cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _train_epoch(
    model: DeepInterestNetwork,
    optimizer: Optimizers,
    data: ClickData,
    cfg: TrainConfig,
    rng: np.random.Generator,
    frequencies: dict[str, torch.Tensor],
    progress_desc: str | None,
) -> None:
    """One pass over the training users; a tqdm bar when `progress_desc` is given."""
    model.train()
    batches = iterate_batches(data, data.train_users, cfg.batch_size, rng, cfg.bucket_by_length)
    total = -(-len(data.train_users) // cfg.batch_size)
    bar = tqdm(batches, total=total, desc=progress_desc, disable=progress_desc is None)
    for batch in bar:
        loss = train_step(model, optimizer, batch, frequencies, cfg, rng)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)


def train_variant(
    variant: str,
    data: ClickData,
    train_cfg: TrainConfig | None = None,
    progress: bool = True,
    **model_overrides: Any,
) -> tuple[DeepInterestNetwork, dict[str, Any]]:
    """Train one variant; keep the epoch with the best validation GAUC.

    Returns the model (eval mode) and {"valid_auc", "valid_gauc", "test_auc", "test_gauc",
    "best_epoch", "valid_gauc_curve", "train_seconds"}.
    """
    cfg = train_cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = DeepInterestNetwork(
        variant_config(variant, data.config.n_items, data.config.n_categories, **model_overrides)
    )
    optimizer = make_optimizer(model, cfg)
    frequencies = frequency_tensors(data)
    best: dict[str, Any] = {"valid_gauc": -1.0}
    curve: list[float] = []  # validation GAUC after each epoch
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        desc = f"{variant} {epoch}/{cfg.epochs}"
        _train_epoch(model, optimizer, data, cfg, rng, frequencies, desc if progress else None)
        if cfg.dice_stats == "reestimate":
            reestimate_dice(model, data, cfg, seed=cfg.seed + epoch)
        valid = evaluate(model, data, data.valid_users, cfg.eval_batch_size)
        curve.append(valid["gauc"])
        if valid["gauc"] > best["valid_gauc"]:
            best = {"valid_gauc": valid["gauc"], "valid_auc": valid["auc"], "best_epoch": epoch}
            best_state = copy.deepcopy(model.state_dict())
        if cfg.patience is not None and epoch - best["best_epoch"] >= cfg.patience:
            break
    model.load_state_dict(best_state)
    test = evaluate(model, data, data.test_users, cfg.eval_batch_size)
    metrics = {**best, "test_auc": test["auc"], "test_gauc": test["gauc"], "valid_gauc_curve": curve,
               "epochs_run": len(curve), "plateaued": cfg.patience is not None and len(curve) < cfg.epochs}
    metrics["train_seconds"] = time.perf_counter() - started
    return model.eval(), metrics


def save_checkpoint(path: Path, model: DeepInterestNetwork, metrics: dict[str, Any], data: ClickData,
                    external_vocabulary: dict[str, Any] | None = None) -> None:
    """Checkpoint = {"state_dict", "config", "metrics", "data_config"} (+ "external_vocabulary" for a
    model trained on a user's click log: models/ctr/user_data.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "config": model.to_dict(),
        "metrics": metrics,
        "data_config": asdict(data.config),
    }
    if external_vocabulary is not None:
        checkpoint["external_vocabulary"] = external_vocabulary
    torch.save(checkpoint, path)


def read_checkpoint(path: Path) -> tuple[DeepInterestNetwork, dict[str, Any]]:
    """`save_checkpoint`'s file -> (model in eval mode, the whole checkpoint dict)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = DeepInterestNetwork.from_config(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


def load_checkpoint(path: Path) -> DeepInterestNetwork:
    """Rebuild a model (eval mode) from `save_checkpoint`'s file."""
    return read_checkpoint(path)[0]


def compare(results: dict[str, dict[str, Any]], oracle: dict[str, float]) -> dict[str, Any]:
    """Add RelaImpr vs the BaseModel (GAUC and AUC) to every variant's test figures."""
    base = results["base"]
    rows = {
        name: {
            **m,
            "rela_impr_gauc": rela_impr(m["test_gauc"], base["test_gauc"]),
            "rela_impr_auc": rela_impr(m["test_auc"], base["test_auc"]),
        }
        for name, m in results.items()
    }
    return {"variants": rows, "oracle": {"test_auc": oracle["auc"], "test_gauc": oracle["gauc"]}}


def render_report(quality: dict[str, Any], command: str) -> str:
    """Markdown table of test AUC/GAUC/RelaImpr per variant plus the oracle row."""
    names = {"base": "BaseModel (sum pooling, PReLU)", "din_prelu": "DIN (PReLU)",
             "din_dice": "DIN (Dice)"}  # fmt: skip
    lines = [
        "# CTR quality: Deep Interest Network on synthetic click logs",
        "",
        f"Produced by `{command}` ({quality['wall_seconds']:.0f} s wall).",
        f"Held-out test users: {quality['test_users']}, impressions: "
        f"{quality['test_impressions']}. RelaImpr = paper eq. 11, vs the BaseModel.",
        "",
        "| variant | test AUC | test GAUC | RelaImpr GAUC | RelaImpr AUC | best epoch |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in quality["variants"].items():
        lines.append(
            f"| {names.get(key, key)} | {m['test_auc']:.4f} | {m['test_gauc']:.4f} | "
            f"{m['rela_impr_gauc']:+.2f}% | {m['rela_impr_auc']:+.2f}% | {m['best_epoch']} |"
        )
    oracle = quality["oracle"]
    lines.append(f"| oracle (true click probability) | {oracle['test_auc']:.4f} | {oracle['test_gauc']:.4f} | | | |")
    return "\n".join(lines) + "\n"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.ctr.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/ctr"), help="checkpoint dir")
    parser.add_argument("--report", type=Path, default=None,
                        help="markdown report (default <out>/quality.md; `make report-ctr` writes reports/)")
    parser.add_argument("--epochs", type=int, default=None, help="override TrainConfig.epochs")
    parser.add_argument("--users", type=int, default=None, help="override the number of users")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch: smoke test")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--sparse-embeddings", action="store_true",
                        help="sparse embedding gradients under lazy Adam (torch.optim.SparseAdam): a step moves only "
                             "its batch's rows, for vocabularies of millions of ids (make bench-ctr-regularisers)")
    own = parser.add_argument_group("your own data (models/ctr/user_data.py)")
    own.add_argument("--data", type=Path, default=None,
                     help="a click log, or an Amazon reviews file, to train on instead of the synthetic world")
    own.add_argument("--format", choices=["clicklog", "amazon"], default=None,
                     help="clicklog: CSV or Parquet with user,item,category,timestamp,clicked; amazon: reviews JSON "
                          "lines + --meta (models/ctr/amazon.py); default: by the file's name")
    own.add_argument("--meta", type=Path, default=None,
                     help="amazon: the metadata file (default: meta_<Category>.json[.gz] beside the reviews)")
    own.add_argument("--ids", choices=["int", "string"], default="int",
                     help="clicklog: the user, item and category ids are integers or strings (asins, SKUs, UUIDs); "
                          "the vocabulary shipped with the model holds them as written. amazon: string ships the asins "
                          "and category names as the vocabulary (served directly) instead of string_ids.json")
    own.add_argument("--min-count", type=int, default=1, help="an item needs this many training events to get a row")
    own.add_argument("--oov", choices=["reject", "bucket"], default="reject",
                     help="ids outside the vocabulary: refused, or one shared learned row")
    own.add_argument("--valid-fraction", type=float, default=0.1,
                     help="clicklog: share of the time line for validation (amazon: each user's last review but one)")
    own.add_argument("--test-fraction", type=float, default=0.1,
                     help="clicklog: share of the time line for test (amazon: each user's last review)")
    own.add_argument("--max-history", type=int, default=50, help="behaviours kept per row")
    own.add_argument("--seeds", type=int, default=1,
                     help="training seeds (--seed, --seed + 1, ...): > 1 gives seed-level intervals")
    own.add_argument("--repository", type=Path, default=None,
                     help="export the best DIN as din-fp32 (alias din) into this model repository, with the "
                          "quantized recipes that pass the quantization gate on your test split")
    own.add_argument("--no-quantize", action="store_true",
                     help="export din-fp32 only: skip the quantization recipes and their gate")
    return parser.parse_args(argv)


def main_user_data(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Every variant on the user's click log, time split; the report compares DIN with the BaseModel on
    the test period; the DIN (Dice) checkpoint carries the id vocabulary and is exported when asked."""
    from models.ctr.user_data import TimeSplit, load_user_data

    started = time.perf_counter()
    split = TimeSplit(args.valid_fraction, args.test_fraction, args.max_history, args.min_count, args.oov)
    loaded = load_user_data(args.data, args.format, split, args.meta, args.seed, args.ids)
    data, vocabulary, summary = loaded.data, loaded.vocabulary, loaded.summary
    train_cfg = TrainConfig(seed=args.seed, sparse_embeddings=args.sparse_embeddings)
    if args.epochs is not None:
        train_cfg = replace(train_cfg, epochs=args.epochs)
    results: dict[str, Any] = {}
    per_seed: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    user_aucs: dict[str, list[dict[int, tuple[int, float]]]] = {variant: [] for variant in VARIANTS}
    for seed in range(args.seed, args.seed + args.seeds):
        for variant in VARIANTS:
            model, metrics = train_variant(variant, data, replace(train_cfg, seed=seed), progress=not args.no_progress)
            if seed == args.seed:  # the first seed's models are the ones kept and exported
                save_checkpoint(args.out / f"{variant}.pt", model, metrics, data, vocabulary.model_dump())
                results[variant] = metrics
            per_seed[variant].append({"seed": seed, "test_gauc": metrics["test_gauc"], "test_auc": metrics["test_auc"]})
            rows, scores = predict(model, data, data.test_users)
            user_aucs[variant].append(per_user_auc(data.labels[rows], scores, data.user_index[rows]))
    quality = compare(results, {"auc": float("nan"), "gauc": float("nan")})  # no true probabilities here
    quality.update(wall_seconds=time.perf_counter() - started, data=summary, source=str(args.data),
                   test_users=len(data.test_users), test_impressions=len(data.impressions_of(data.test_users)),
                   train_config=asdict(train_cfg), seeds=per_seed,
                   gauc_vs_base={variant: seed_level_gauc_difference(user_aucs[variant], user_aucs["base"])
                                 for variant in VARIANTS if variant != "base"})
    for name, content in loaded.beside_model.items():  # amazon: string_ids.json
        (args.out / name).write_text(json.dumps(content, indent=1) + "\n")
    gate_section = "\n## Quantization gate\n\nNot run: no --repository, nothing is exported.\n"
    if args.repository is not None:
        from exporters.ctr_user_quant import render_gate

        quality["quantization_gate"] = export_user_model(args, data, loaded.beside_model, command)
        gate_section = render_gate(quality["quantization_gate"], "--no-quantize")
    (args.out / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    text = render_user_report(quality, command) + gate_section
    report = args.report or args.out / "quality.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)
    if args.repository is not None:
        print(f"exported into {args.repository}: make serve SERVE_REPOSITORY={args.repository}")
    return quality


def export_user_model(args: argparse.Namespace, data: ClickData, beside_model: dict[str, Any],
                      command: str) -> dict[str, Any] | None:
    """DIN (Dice) as din-fp32 (a checkpoint whose training did not finish is refused), then, unless
    --no-quantize, the quantization gate on the user's splits (exporters/ctr_user_quant.py) -> its verdicts."""
    from exporters.ctr import export_din
    from exporters.ctr_user_quant import quantize_user_model, remove_variants, require_finished
    from exporters.repository import set_default_alias

    require_finished(read_checkpoint(args.out / "din_dice.pt")[1]["metrics"])
    remove_variants(args.repository)  # a previous run's recipes were judged against another din-fp32
    version_dir = export_din(args.out / "din_dice.pt", args.repository, "din-fp32")
    for name in beside_model:
        (version_dir / name).write_bytes((args.out / name).read_bytes())
    set_default_alias(args.repository, "din", "din-fp32")
    if args.no_quantize:
        return None
    return quantize_user_model(args.out / "din_dice.pt", args.repository, data, command,
                               beside_model=tuple(beside_model))


def seed_level_gauc_difference(variant: list[dict[int, tuple[int, float]]],
                               control: list[dict[int, tuple[int, float]]]) -> dict[str, Any]:
    """The GAUC difference variant - control as a hierarchical bootstrap over the training seeds and the
    test users both score (models/statistics.py): per seed, each user's AUC difference, weighted by impressions."""
    from models.statistics import hierarchical_bootstrap

    users = sorted(set.intersection(*(set(a) for a in variant + control)))
    differences = np.array([[v[u][1] - c[u][1] for u in users] for v, c in zip(variant, control, strict=True)])
    weights = np.array([control[0][u][0] for u in users], np.float64)
    interval = hierarchical_bootstrap(differences, weights)
    return {"estimate": interval.estimate, "interval_95": [interval.low, interval.high], "seeds": interval.seeds,
            "users": interval.units, "resamples": interval.resamples, "verdict": interval.verdict}


def render_user_report(quality: dict[str, Any], command: str) -> str:
    """The user-data report: the data and its split, then test AUC/GAUC/RelaImpr per variant."""
    data = quality["data"]
    described = (f"{data['events']} events of {data['users']} users; {data.get('ids', 'int')} ids; vocabulary "
                 f"{data['vocabulary']['items']} items "
                 f"(min count {data['vocabulary']['min_count']}), {data['vocabulary']['categories']} categories, "
                 f"unknown ids: {data['vocabulary']['oov']} ({data['events_dropped_oov']} events dropped); time cuts "
                 f"at {data['cuts'][0]:g} and {data['cuts'][1]:g}.") if "cuts" in data else ""
    test_rule = "Test = the events after the second cut, scored against each user's earlier clicks"
    if data.get("format") == "amazon":
        from models.ctr.amazon import describe

        described, test_rule = describe(data)
    lines = [
        "# CTR quality: Deep Interest Network on your "
        + ("Amazon reviews" if data.get("format") == "amazon" else "click log"), "",
        f"Produced by `{command}` ({quality['wall_seconds']:.0f} s wall) from `{quality['source']}`: {described}", "",
        "| split | rows | impressions |", "|---|---|---|",
        *(f"| {k} | {data['rows'][k]} | {data['impressions'][k]} |" for k in ("train", "valid", "test")), "",
        f"{test_rule}; the epoch is chosen on validation GAUC. "
        "RelaImpr = paper eq. 11, vs the BaseModel (sum pooling). "
        f"Training seeds: {len(quality['seeds']['base'])} (the table shows the first seed's models, the ones "
        "exported; the intervals below resample seeds and test users together).", "",
        "| variant | test AUC | test GAUC | RelaImpr GAUC | valid GAUC | best epoch |", "|---|---|---|---|---|---|"]
    names = {"base": "BaseModel (sum pooling, PReLU)", "din_prelu": "DIN (PReLU)", "din_dice": "DIN (Dice)"}
    for key, m in quality["variants"].items():
        lines.append(f"| {names.get(key, key)} | {m['test_auc']:.4f} | {m['test_gauc']:.4f} | "
                     f"{m['rela_impr_gauc']:+.2f}% | {m['valid_gauc']:.4f} | {m['best_epoch']} |")
    from models.statistics import RULE

    lines += ["", f"Test GAUC difference against the BaseModel over seeds and users ({RULE}):", "",
              "| variant | test GAUC per seed | GAUC - BaseModel | 95% interval | seeds x users | verdict |",
              "|---|---|---|---|---|---|"]
    for key, d in quality["gauc_vs_base"].items():
        per_seed = ", ".join(f"{r['test_gauc']:.4f}" for r in quality["seeds"][key])
        lines.append(f"| {names.get(key, key)} | {per_seed} | {d['estimate']:+.4f} | [{d['interval_95'][0]:+.4f}, "
                     f"{d['interval_95'][1]:+.4f}] | {d['seeds']} x {d['users']} | {d['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    if args.data is not None:
        return main_user_data(args, "python -m models.ctr.train " + shlex.join(argv if argv is not None
                                                                              else sys.argv[1:]))
    started = time.perf_counter()
    data_cfg = ClickDataConfig(seed=args.seed)
    train_cfg = TrainConfig(seed=args.seed, sparse_embeddings=args.sparse_embeddings)
    if args.quick:
        data_cfg, train_cfg = replace(data_cfg, n_users=1500), replace(train_cfg, epochs=1)
    if args.users is not None:
        data_cfg = replace(data_cfg, n_users=args.users)
    if args.epochs is not None:
        train_cfg = replace(train_cfg, epochs=args.epochs)
    data = make_click_data(data_cfg)
    results = {}
    for variant in VARIANTS:
        model, metrics = train_variant(variant, data, train_cfg, progress=not args.no_progress)
        save_checkpoint(args.out / f"{variant}.pt", model, metrics, data)
        results[variant] = metrics
    quality = compare(results, oracle_report(data, data.test_users))
    quality.update(
        wall_seconds=time.perf_counter() - started,
        test_users=len(data.test_users),
        test_impressions=len(data.impressions_of(data.test_users)),
        data_config=asdict(data_cfg),
        train_config=asdict(train_cfg),
    )
    command = "python -m models.ctr.train " + shlex.join(argv if argv is not None else sys.argv[1:])
    (args.out / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    report = args.report or args.out / "quality.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(quality, command.strip()))
    print(render_report(quality, command.strip()))
    return quality


if __name__ == "__main__":
    main()
