"""Train the ECO-M2F segmentation family: step 1 (early-exit parent), steps 2-3 (derived
dataset with beta, gating network) for the deployed beta.

    python -m models.segmentation.train --out artifacts/segmentation          # default, ~5 min on 2 cores
    python -m models.segmentation.train --out /tmp/seg --quick                # a smoke run in seconds
    python -m models.segmentation.train --regate artifacts/segmentation/eco_m2f.pt --out /tmp/regated
                                       # steps 2-3 only: the trained parent with a new gate (current defaults)
    python -m models.segmentation.train --data my_images --repository user_models
                                       # your own labelled images (models/segmentation/user_data.py): the
                                       # model sized to their classes, artifacts/segmentation-user/quality.md
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.segmentation.data import SceneConfig, Scenes, iterate_batches, make_scenes
from models.segmentation.eco_m2f import EcoM2F, EcoM2FConfig, ExitGate, stage_gflops
from models.segmentation.gating import (
    ExitTable,
    derived_targets,
    exit_quality,
    expected_confusions,
    fold_exit_cost,
    gate_choice,
    ideal_exits,
    policy_row,
    train_gate,
)
from models.segmentation.metrics import IGNORE_LABEL, mean_iou, per_image_miou

DEFAULT_BETA = 0.01  # the paper's headline setting


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12  # passes over the training scenes (step 1)
    batch_size: int = 32  # scenes per mini-batch
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay)
    weight_decay: float = 1e-2
    gate_epochs: int = 80  # passes over the derived dataset (step 3)
    gate_weight_decay: float = 1e-2  # AdamW weight decay of the gate's MLP (step 3)
    # Step 2's q_k: "image_miou" (paper: each image's own mIoU) or "dataset_miou" (the image's
    # first-order share of the set's mIoU, models/segmentation/gating.py `marginal_quality`).
    gate_quality: str = "dataset_miou"
    # Step 3's target: "ideal_exit" (paper: cross-entropy on k*) or "gain" (regression on q_k - q_first,
    # the exit cost beta * k folded into the gate's last bias). The defaults are the design that beat the
    # equal-compute fixed mix on validation and test (reports/segmentation_gate.md).
    gate_target: str = "gain"
    seed: int = 0  # initialisation and batch order
    # How step 1 weighs the exits' losses: "depth" scales exit k's loss by k (normalised to sum 1), as
    # the official ECO-M2F code does; "uniform" is a plain mean over exits.
    exit_weighting: str = "depth"
    # One intra-op thread: on a shared 2-core machine two OpenMP threads spin-waited for each
    # other and cost 15x the CPU time per step (0.27 s vs 3.9 s per batch of 32, measured).
    threads: int = 1


def exit_weights(exits: list[int], weighting: str) -> torch.Tensor:
    """(E,) step-1 loss weight of each exit, summing to 1: proportional to the exit's depth k
    ("depth", the official code's per-exit scaling) or equal ("uniform")."""
    if weighting not in ("depth", "uniform"):
        raise ValueError(f"exit_weighting {weighting!r} is unknown (use depth or uniform)")
    weights = torch.tensor(exits, dtype=torch.float32) if weighting == "depth" else torch.ones(len(exits))
    return weights / weights.sum()


def _exit_loss(model: EcoM2F, image: torch.Tensor, labels: torch.Tensor, weighting: str) -> torch.Tensor:
    """Step 1: cross-entropy at every exit first_exit..L (one encoder pass), weighted per exit; IGNORE_LABEL
    pixels become cross_entropy's default ignore_index (-100), so they add no loss."""
    ignored = labels == IGNORE_LABEL
    if ignored.any():
        if model.config.head != "fpn":
            raise ValueError("the query head's set loss does not honour an ignore index: train labels with "
                             "ignored pixels with --set head=fpn")
        labels = labels.masked_fill(ignored, -100)
    return (model.exit_losses(image, labels) * exit_weights(model.config.exits, weighting)).sum()


def train_parent(
    scenes: Scenes, model_cfg: EcoM2FConfig, cfg: TrainConfig, progress: bool = True
) -> tuple[EcoM2F, dict[str, Any]]:
    """Step 1: early-exit training; keeps the epoch with the best validation mIoU at full depth."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = EcoM2F(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(scenes.train) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps, pct_start=0.1)
    best, best_state, started = -1.0, None, time.perf_counter()
    curve = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        bar = tqdm(
            iterate_batches(scenes, scenes.train, cfg.batch_size, rng),
            disable=not progress,
            total=-(-len(scenes.train) // cfg.batch_size),
            desc=f"step 1 epoch {epoch}/{cfg.epochs}",
        )
        for image, labels in bar:
            loss = _exit_loss(model, torch.from_numpy(image), torch.from_numpy(labels), cfg.exit_weighting)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        valid = exit_table(model, scenes, scenes.valid)
        curve.append(valid.miou(np.full(len(scenes.valid), len(valid.exits) - 1)))
        if progress:
            tqdm.write(f"epoch {epoch}: valid mIoU at exit {valid.exits[0]} "
                       f"{100 * valid.miou(np.zeros(len(scenes.valid), int)):.1f}, at full depth {100 * curve[-1]:.1f} "
                       f"({time.perf_counter() - started:.0f} s)")
        if curve[-1] > best:
            best, best_state = curve[-1], copy.deepcopy(model.state_dict())
    assert best_state is not None, "no epoch ran"
    model.load_state_dict(best_state)
    return model.eval(), {"valid_miou_full_depth_curve": curve, "train_seconds": time.perf_counter() - started,
                          "exit_weighting": cfg.exit_weighting, "train_config": asdict(cfg)}


def exit_table(model: EcoM2F, scenes: Scenes, indices: np.ndarray, batch_size: int = 100) -> ExitTable:
    """Per-image quality and confusion at every exit, plus the gate's input features."""
    model.eval()
    n_classes = model.config.n_classes
    quality, confusions, features = [], [], []
    for image, labels in iterate_batches(scenes, indices, batch_size):
        with torch.no_grad():
            tokens, _ = model.forward_features(torch.from_numpy(image))
            features.append(model.gate.pooled(model.gate_tokens(tokens)).numpy())
            predicted = np.stack([lg.argmax(1).numpy() for lg in model.forward_exits(torch.from_numpy(image))], 1)
        b, e = predicted.shape[:2]  # (B, E, H, W)
        quality.append(np.stack([per_image_miou(predicted[:, k], labels, n_classes) for k in range(e)], 1))
        image_exit = np.arange(b * e).reshape(b, e, 1, 1)
        index = (image_exit * n_classes + labels[:, None]) * n_classes + predicted  # (B, E, H, W)
        counted = np.broadcast_to(labels[:, None] != IGNORE_LABEL, index.shape)  # ignored pixels count nowhere
        confusions.append(
            np.bincount(index[counted], minlength=b * e * n_classes**2)
            .reshape(b, e, n_classes, n_classes)
            .astype(np.int32)
        )
    return ExitTable(model.config.exits, np.concatenate(quality), np.concatenate(confusions), np.concatenate(features))


def fit_gate(model: EcoM2F, train: ExitTable, beta: float, cfg: TrainConfig) -> np.ndarray:
    """Steps 2 and 3 for one beta: the derived dataset (k*, or per-exit gains for the regression
    gate), then the gate (in place). -> k* columns of the derived dataset."""
    targets = derived_targets(train, beta, cfg.gate_quality, cfg.gate_target)
    train_gate(model.gate, train.gate_features, targets, epochs=cfg.gate_epochs,
               weight_decay=cfg.gate_weight_decay, seed=cfg.seed)
    if cfg.gate_target == "gain":
        fold_exit_cost(model.gate, train.exits, beta)
    return ideal_exits(exit_quality(train, cfg.gate_quality), train.exits, beta)


def evaluate_policies(model: EcoM2F, table: ExitTable, costs: dict[str, float]) -> list[dict[str, Any]]:
    """Fixed depths and the gate on one held-out table."""
    rows = [
        policy_row(table, np.full(len(table.quality), col), costs, f"fixed {k}") for col, k in enumerate(table.exits)
    ]
    rows.append(policy_row(table, gate_choice(model.gate, table.gate_features), costs, "gate"))
    return rows


def save_checkpoint(path: Path, model: EcoM2F, metrics: dict[str, Any], scene_cfg: Any, beta: float,
                    data_meta: dict[str, Any] | None = None) -> None:
    """Checkpoint = {"state_dict", "config", "metrics", "scene_config" (the data config: SceneConfig or
    user_data.LabelMapConfig), "beta"} and, for a user's data, "class_names" and "ignore_index"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "config": model.to_dict(),
            "metrics": metrics,
            "scene_config": asdict(scene_cfg),
            "beta": beta,
            **(data_meta or {}),
        },
        path,
    )


def load_checkpoint(path: Path) -> tuple[EcoM2F, dict[str, Any]]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = EcoM2F.from_config(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


def run(
    scene_cfg: Any, model_cfg: EcoM2FConfig, cfg: TrainConfig, beta: float, out: Path, progress: bool = True
) -> tuple[EcoM2F, dict[str, Any]]:
    """All three steps on the synthetic scenes (SceneConfig) or a user's labelled images
    (user_data.LabelMapConfig: the model is sized to their classes and image size); writes
    <out>/eco_m2f.pt and <out>/quality.json."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    scenes, model_cfg = _scenes(scene_cfg, model_cfg, progress)
    model, metrics = train_parent(scenes, model_cfg, cfg, progress)
    if not isinstance(scene_cfg, SceneConfig):
        metrics.update(_data_figures(scenes, model_cfg.n_classes))
    metrics = _gate_and_save(model, scenes, scene_cfg, cfg, beta, out, metrics, "wall_seconds", started)
    return model, metrics


def _scenes(scene_cfg: Any, model_cfg: EcoM2FConfig, progress: bool) -> tuple[Scenes, EcoM2FConfig]:
    """The synthetic scenes (SceneConfig) or a user's images, and the model config sized to them."""
    if isinstance(scene_cfg, SceneConfig):
        return make_scenes(scene_cfg), model_cfg
    return _user_scenes(scene_cfg, model_cfg, progress)


def seed_study(scene_cfg: Any, model_cfg: EcoM2FConfig, cfg: TrainConfig, beta: float, out: Path, first: EcoM2F,
               seeds: int, progress: bool = True) -> dict[str, Any]:
    """Training variance of a run: `first` (trained with cfg.seed, the model that is exported) and seeds
    cfg.seed + 1 .. cfg.seed + seeds - 1, each all three steps into <out>/seeds/seed<k>/. On the test split at
    the model's size, per seed: the gate, the fixed-depth mix of the gate's own mean compute (the analytic
    expectation over random splits, `expected_confusions`) and full depth; the gate against the other two as a
    hierarchical bootstrap over seeds x test images of dataset mIoU (models/statistics.py). Nothing is chosen
    on the test split. -> the study (also <out>/seeds.json)."""
    from models.segmentation.metrics import iou_counts, mean_iou_of_counts
    from models.statistics import RULE, hierarchical_bootstrap_pooled

    if seeds < 2:
        raise ValueError(f"a seed study needs at least 2 seeds, got {seeds}")
    models = [first]
    for seed in range(cfg.seed + 1, cfg.seed + seeds):
        if progress:
            tqdm.write(f"training seed {seed} ({seed - cfg.seed + 1} of {seeds})")
        models.append(run(scene_cfg, model_cfg, replace(cfg, seed=seed), beta, out / "seeds" / f"seed{seed}",
                          progress)[0])
    scenes, _ = _scenes(scene_cfg, model_cfg, False)
    per_seed: list[dict[str, Any]] = []
    counts: dict[str, list[np.ndarray]] = {"gate": [], "mix": [], "full": []}
    for seed, model in zip(range(cfg.seed, cfg.seed + seeds), models, strict=True):
        table = exit_table(model, scenes, scenes.test)
        choice = gate_choice(model.gate, table.gate_features)
        layers = float(table.layers(choice).mean())
        gate = table.confusions[np.arange(len(choice)), choice]
        mix = expected_confusions(table.confusions, table.exits, layers)
        counts["gate"].append(iou_counts(gate))
        counts["mix"].append(iou_counts(mix))
        counts["full"].append(iou_counts(table.confusions[:, -1]))
        per_seed.append({"seed": seed, "gate_miou": mean_iou(gate.sum(0)), "gate_layers": layers,
                         "mix_miou": mean_iou(mix.sum(0)),
                         "fixed_miou": {str(k): table.miou(np.full(len(choice), col))
                                        for col, k in enumerate(table.exits)}})
    arrays = {name: np.stack(value) for name, value in counts.items()}
    comparisons = {}
    for name, control in (("gate - equal-compute mix", "mix"), ("gate - full depth", "full")):
        interval = hierarchical_bootstrap_pooled(arrays["gate"], arrays[control], mean_iou_of_counts)
        comparisons[name] = {"estimate": interval.estimate, "interval_95": [interval.low, interval.high],
                             "seeds": interval.seeds, "images": interval.units, "verdict": interval.verdict}
    study = {"seeds": per_seed, "comparisons": comparisons, "rule": RULE, "beta": beta,
             "n_layers": first.config.n_layers, "test_images": len(scenes.test)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(study, indent=2) + "\n")
    return study


def _user_scenes(data_cfg: Any, model_cfg: EcoM2FConfig, progress: bool) -> tuple[Scenes, EcoM2FConfig]:
    """A user's data (the import pulls in the service's image policy) and the model config sized to it;
    refuses data whose per-image confusion tables (steps 2-3) would not fit `data_cfg.max_bytes`."""
    from models.segmentation.user_data import describe, load_data

    scenes = load_data(data_cfg, progress)
    model_cfg = replace(model_cfg, n_classes=len(scenes.class_names), image_size=data_cfg.image_size)  # type: ignore[attr-defined]
    # exit_table keeps (N, E, C, C) int32 per split, marginal_quality two int64 copies of the training one
    table_bytes = len(scenes.train) * len(model_cfg.exits) * model_cfg.n_classes ** 2 * 20
    if table_bytes > data_cfg.max_bytes:
        raise ValueError(f"{len(scenes.train)} training images x {len(model_cfg.exits)} exits x "
                         f"{model_cfg.n_classes}^2 classes need {table_bytes / 2**30:.1f} GiB of confusion tables for "
                         f"the gate (limit {data_cfg.max_bytes / 2**30:.1f} GiB): use fewer training images")
    if progress:
        tqdm.write(f"data: {describe(scenes)}")
    return scenes, model_cfg


def _data_figures(scenes: Scenes, n_classes: int) -> dict[str, Any]:
    """A user's data in the metrics: the split sizes and each class's labelled training pixels (model size)."""
    from models.segmentation.user_data import describe

    train = scenes.labels[scenes.train].ravel()
    return {"data": describe(scenes),
            "train_pixels_per_class": np.bincount(train[train != IGNORE_LABEL], minlength=n_classes).tolist()}


def _gate_and_save(model: EcoM2F, scenes: Scenes, scene_cfg: Any, cfg: TrainConfig, beta: float,
                   out: Path, metrics: dict[str, Any], seconds_key: str, started: float) -> dict[str, Any]:
    """Steps 2-3 on the trained parent, the test policies, then <out>/eco_m2f.pt and <out>/quality.json;
    metrics[seconds_key] = the wall time since `started`."""
    targets = fit_gate(model, exit_table(model, scenes, scenes.train), beta, cfg)
    costs = stage_gflops(model)
    metrics = {**metrics, "beta": beta, "stage_gflops": costs,
               "derived_exit_counts": np.bincount(targets, minlength=len(model.config.exits)).tolist(),
               "test": evaluate_policies(model, exit_table(model, scenes, scenes.test), costs)}
    metrics[seconds_key] = time.perf_counter() - started
    save_checkpoint(out / "eco_m2f.pt", model, metrics, scene_cfg, beta, data_meta(scenes))
    (out / "quality.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def data_meta(scenes: Scenes) -> dict[str, Any]:
    """What a checkpoint records about a user's data beyond its config (nothing for the synthetic scenes)."""
    names = getattr(scenes, "class_names", ())
    return {"class_names": list(names), "ignore_index": scenes.ignore_index} if names else {}  # type: ignore[attr-defined]


GATE_FIELDS = ("gate_pool", "gate_hidden", "gate_after_layer")  # the EcoM2FConfig fields of the gate alone


def regate(checkpoint: Path, model_cfg: EcoM2FConfig, cfg: TrainConfig, beta: float,
           out: Path) -> tuple[EcoM2F, dict[str, Any]]:
    """Steps 2-3 only on a trained parent: a new gate (model_cfg's gate fields, cfg's step-2/3
    settings), every parent weight kept. Writes <out>/eco_m2f.pt and <out>/quality.json."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    model, ckpt = load_checkpoint(checkpoint)
    model.config = replace(model.config, **{name: getattr(model_cfg, name) for name in GATE_FIELDS})
    model.gate = ExitGate(model.config)
    from models.segmentation.user_data import data_config_from_dict, load_data

    scene_cfg = data_config_from_dict(ckpt["scene_config"])
    step1 = ckpt["metrics"].get("train_config", {})
    metrics = {**ckpt["metrics"], "regated_from": checkpoint.name,
               "train_config": {**step1, **{k: v for k, v in asdict(cfg).items() if k.startswith("gate_")}}}
    metrics = _gate_and_save(model, load_data(scene_cfg), scene_cfg, cfg, beta, out, metrics,
                             "regate_seconds", started)
    return model, metrics


def apply_overrides(pairs: list[str], *configs: Any) -> tuple[Any, ...]:
    """FIELD=VALUE pairs applied to whichever config dataclass has the field (value parsed as
    JSON, so numbers, true/false and lists work; anything else is taken as a string)."""
    configs_list = list(configs)
    for pair in pairs:
        name, _, text = pair.partition("=")
        owners = [i for i, c in enumerate(configs_list) if name in c.__dataclass_fields__]
        if not owners:
            raise SystemExit(f"--set {pair}: no config has a field {name!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        configs_list[owners[0]] = replace(configs_list[owners[0]], **{name: value})
    return tuple(configs_list)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.segmentation.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="checkpoint dir (artifacts/segmentation, with --data artifacts/segmentation-user)")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="deployed quality/compute trade-off")
    parser.add_argument("--epochs", type=int, default=None, help="override TrainConfig.epochs")
    parser.add_argument("--images", type=int, default=None, help="override SceneConfig.n_images")
    parser.add_argument("--stage-convs", type=int, default=None, help="override EcoM2FConfig.stage_convs")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a SceneConfig, EcoM2FConfig or TrainConfig field (repeatable)")
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed: initialisation and batch order (TrainConfig.seed; --set seed=N sets the "
                             "data's seed)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="training seeds (--seed, --seed + 1, ...): > 1 trains the others into <out>/seeds/ and "
                             "reports the gate against equal compute and full depth with seed-level intervals; the "
                             "first seed's model is the one exported")
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch: smoke test")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars and epoch lines")
    parser.add_argument("--regate", type=Path, default=None, metavar="CHECKPOINT",
                        help="steps 2-3 only: keep this trained parent, fit a new gate (the gate settings above)")
    own = parser.add_argument_group("your own labelled images (models/segmentation/user_data.py)")
    own.add_argument("--data", type=Path, default=None, help="DIR with images/, annotations/ and classes.txt")
    own.add_argument("--format", choices=["folder", "ade20k"], default="folder",
                     help="ade20k: label 0 is ignored and label k is class k - 1")
    own.add_argument("--image-size", type=int, default=64, help="the model's square input side (multiple of 16)")
    own.add_argument("--repository", type=Path, default=None,
                     help="export the trained model's staged graphs here (make serve SERVE_REPOSITORY=DIR), with "
                          "the quantized recipes that pass the quantization gate on your test split")
    own.add_argument("--no-quantize", action="store_true",
                     help="export the fp32 stages only: skip the quantization recipes and their gate")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.seeds > 1 and args.regate is not None):
        parser.error("--seeds must be >= 1, and 1 with --regate (a regate keeps one trained parent)")
    args.command = "python -m models.segmentation.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.out = args.out or Path("artifacts/segmentation-user" if args.data else "artifacts/segmentation")
    scene_cfg: Any = SceneConfig()
    cfg = TrainConfig()
    if args.quick:
        scene_cfg, cfg = replace(scene_cfg, n_images=300), replace(cfg, epochs=1, gate_epochs=5)
    if args.images is not None:
        scene_cfg = replace(scene_cfg, n_images=args.images)
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    if args.data is not None:
        from models.segmentation.user_data import LabelMapConfig

        scene_cfg = LabelMapConfig(str(args.data), args.format, args.image_size)
    model_cfg = EcoM2FConfig() if args.stage_convs is None else EcoM2FConfig(stage_convs=args.stage_convs)
    scene_cfg, model_cfg, cfg = apply_overrides(args.set, scene_cfg, model_cfg, cfg)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    try:
        if args.regate is not None:
            model, metrics = regate(args.regate, model_cfg, cfg, args.beta, args.out)
        else:
            shutil.rmtree(args.out / "seeds", ignore_errors=True)  # an earlier run's other seeds
            (args.out / "seeds.json").unlink(missing_ok=True)
            model, metrics = run(scene_cfg, model_cfg, cfg, args.beta, args.out, progress=not args.no_progress)
            if args.seeds > 1:
                metrics["seed_study"] = seed_study(scene_cfg, model_cfg, cfg, args.beta, args.out, model, args.seeds,
                                                   progress=not args.no_progress)
        if args.data is not None:
            _report_and_export(model, metrics, args)
    except ValueError as exc:  # the data's fault: one line, no traceback
        raise SystemExit(f"error: {exc}") from None
    for row in metrics["test"]:
        print(
            f"{row['policy']:>8}: mIoU {100 * row['miou']:.2f}  layers {row['mean_layers']:.2f}  "
            f"GFLOPs {row['gflops']:.4f}"
        )
    for name, d in metrics.get("seed_study", {}).get("comparisons", {}).items():
        print(f"{name}, test mIoU over {d['seeds']} seeds x {d['images']} images: {100 * d['estimate']:+.2f} points "
              f"[{100 * d['interval_95'][0]:+.2f}, {100 * d['interval_95'][1]:+.2f}]: {d['verdict']}")
    print(f"wall {metrics.get('regate_seconds', metrics['wall_seconds']):.0f} s")
    return metrics


def _report_and_export(model: EcoM2F, metrics: dict[str, Any], args: argparse.Namespace) -> None:
    """A user's data: the test report at the images' own size (<out>/quality.md), then the export."""
    from models.segmentation.user_report import write_report

    report = write_report(model, args.out / "eco_m2f.pt", args.out / "quality.md", metrics.get("seed_study"))
    print(f"test at the images' own size: mIoU {100 * report['miou']:.2f}, pixel accuracy "
          f"{100 * report['pixel_accuracy']:.2f}, mean encoder layers {report['mean_layers']:.2f} "
          f"(report: {args.out / 'quality.md'})")
    metrics["test_original_size"] = report
    if args.repository is None:
        from exporters.segmentation_user_quant import render_gate
        from models.segmentation.user_report import add_gate_section

        add_gate_section(args.out / "quality.md", render_gate(None, "no --repository, nothing is exported"), None)
        return
    from models.segmentation.user_data import export_user_model  # export, then the quantization gate

    metrics["quantization_gate"] = export_user_model(args.out / "eco_m2f.pt", args.repository,
                                                     quantize=not args.no_quantize, report=args.out / "quality.md",
                                                     command=args.command)
    print(f"exported the staged graphs into {args.repository}: make serve SERVE_REPOSITORY={args.repository}")


if __name__ == "__main__":
    main()
