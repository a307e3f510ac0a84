"""ECO-M2F steps 2 and 3: the derived dataset and the gating network.

Step 2 (paper sec. 3.3): for every training image, the quality q_k of the early-exit parent at
each exit k (here per-image mIoU in [0, 1]), and the ideal exit

    k* = argmax_k (q_k - beta * k)                                       (beta >= 0)

so one more encoder layer must buy at least beta of per-image mIoU to be worth running.
Step 3 (sec. 3.4): the gate (pooled encoder-input tokens -> MLP -> exit logits) is trained with
cross-entropy on k*, the parent frozen. Changing beta re-runs only these two steps.

Two options beyond the paper (`TrainConfig.gate_quality`, `TrainConfig.gate_target`):
- q_k as each image's share of the DATASET mIoU the service is judged by (`marginal_quality`):
  per-image mIoU swings by a whole class's IoU when a few stray pixels name a class the image
  lacks, which no pooled feature predicts, while the dataset mIoU barely moves.
- regression instead of classification: the gate predicts every exit's gain q_k - q_first and
  the service picks argmax_k (gain_k - beta * k); the cost is folded into the last layer's bias
  (`fold_exit_cost`), so exit_logits keep their meaning (argmax = exit) and one fit serves every beta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.segmentation.eco_m2f import ExitGate
from models.segmentation.metrics import iou_per_class, mean_iou

GATE_QUALITIES = ("image_miou", "dataset_miou")  # what q_k measures (see the module docstring)
GATE_TARGETS = ("ideal_exit", "gain")  # classification on k* (paper) or regression on q_k - q_first


@dataclass
class ExitTable:
    """What the frozen parent does on a set of images, at every exit (from one encoder pass)."""

    exits: list[int]  # exit layer of each column, e.g. [2, 3, 4, 5, 6]
    quality: np.ndarray  # (N, E) per-image mIoU q_k
    confusions: np.ndarray  # (N, E, C, C) per-image confusion matrices (rows = ground truth)
    gate_features: np.ndarray  # (N, F) the gate's pooled input tokens

    def miou(self, choice: np.ndarray) -> float:
        """Dataset mIoU when image i leaves at exit column choice[i]."""
        rows = np.arange(len(choice))
        return mean_iou(self.confusions[rows, choice].sum(0))

    def layers(self, choice: np.ndarray) -> np.ndarray:
        return np.asarray(self.exits)[choice]


def ideal_exits(quality: np.ndarray, exits: list[int], beta: float) -> np.ndarray:
    """(N,) column of k* = argmax_k (q_k - beta * k) for every image (ties -> the shallower exit)."""
    return np.argmax(quality - beta * np.asarray(exits, dtype=np.float64)[None, :], axis=1)


def marginal_quality(confusions: np.ndarray, reference: int = 0) -> np.ndarray:
    """(N, E) each image's first-order effect on the set's dataset mIoU at every exit:

        q_ik = N * (mIoU(S - C_i,ref + C_ik) - mIoU(S)),   S = sum_i C_i,ref

    (image i alone moved from the reference exit column to exit k, everyone else at the
    reference), scaled by N into "dataset mIoU if every image were like this one" units, so q_i,ref = 0
    and beta keeps the per-image-mIoU scale. confusions: (N, E, C, C) rows = ground truth."""
    confusions = confusions.astype(np.int64)
    total = confusions[:, reference].sum(0)  # (C, C)
    moved = total - confusions[:, reference, None] + confusions  # (N, E, C, C)
    return len(confusions) * (np.nanmean(iou_per_class(moved), axis=-1) - mean_iou(total))


def exit_quality(table: ExitTable, measure: str) -> np.ndarray:
    """(N, E) the q_k that steps 2-3 use: per-image mIoU (paper) or the image's dataset-mIoU share."""
    if measure not in GATE_QUALITIES:
        raise ValueError(f"gate quality {measure!r} is unknown (use one of {', '.join(GATE_QUALITIES)})")
    return table.quality if measure == "image_miou" else marginal_quality(table.confusions)


def derived_targets(table: ExitTable, beta: float, quality: str = "image_miou",
                    target: str = "ideal_exit") -> np.ndarray:
    """Step 2: (N,) k* columns (classification, paper) or (N, E) gains q_k - q_first (regression)."""
    measured = exit_quality(table, quality)
    if target == "ideal_exit":
        return ideal_exits(measured, table.exits, beta)
    if target == "gain":
        return measured - measured[:, :1]
    raise ValueError(f"gate target {target!r} is unknown (use one of {', '.join(GATE_TARGETS)})")


def fold_exit_cost(gate: ExitGate, exits: list[int], beta: float) -> ExitGate:
    """Regression gate: subtract beta * (k - first exit) from exit k's output (the last layer's
    bias), so argmax of the exit logits is argmax_k (predicted gain_k - beta * k). In place."""
    cost = beta * (torch.tensor(exits, dtype=torch.float32) - exits[0])
    last = gate.mlp[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.bias.sub_(cost)
    return gate


def train_gate(
    gate: ExitGate,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> ExitGate:
    """Fits the gate's MLP to the derived dataset (features = `ExitGate.pooled` of the images):
    cross-entropy on k* when targets are (N,) exit columns, mean squared error when they are
    (N, E) per-exit gains (the regression gate)."""
    torch.manual_seed(seed)
    for module in gate.mlp:
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            module.reset_parameters()
    regression = targets.ndim == 2
    n_exits = gate.mlp[-1].out_features
    if regression and targets.shape[1] != n_exits:
        raise ValueError(f"{targets.shape[1]} gain columns for a gate of {n_exits} exits")
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(targets).float() if regression else torch.from_numpy(targets).long()
    objective = F.mse_loss if regression else F.cross_entropy
    optimizer = torch.optim.AdamW(gate.mlp.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    gate.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = objective(gate.mlp(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    gate.eval()
    return gate


def expected_confusions(confusions: np.ndarray, exits: list[int], mean_layers: float) -> np.ndarray:
    """(N, C, C) each image's expected confusion under the equal-compute fixed-depth mix (images split at
    random between the two fixed depths around `mean_layers`): its two neighbouring depths weighted by the
    share of images that go deeper (the analytic expectation of the summed confusion)."""
    grid = np.asarray(exits, np.float64)
    low = int(np.clip(np.searchsorted(grid, mean_layers, side="right") - 1, 0, len(grid) - 1))
    high = min(low + 1, len(grid) - 1)
    share = 0.0 if high == low else (mean_layers - grid[low]) / (grid[high] - grid[low])
    return (1 - share) * confusions[:, low] + share * confusions[:, high]


def oracle_confusions(confusions: np.ndarray, quality: np.ndarray, exits: list[int], mean_layers: float,
                      iterations: int = 60) -> np.ndarray:
    """(N, C, C) the expected confusions of the oracle at a mean depth: each image at
    argmax_k (quality_ik - lam * k), lam found by bisection so that the mean depth brackets `mean_layers`; the
    two choices on either side of it (they differ only on the images whose best exit flips there) mixed in the
    shares that match the depth exactly. The Lagrangian optimum of sum_i quality_i at that compute, for
    `quality` (N, E), e.g. `marginal_quality` (each image's share of the dataset mIoU)."""
    grid = np.asarray(exits, np.float64)
    if not grid[0] <= mean_layers <= grid[-1]:
        raise ValueError(f"mean_layers {mean_layers} is outside the exits {exits[0]}..{exits[-1]}")

    def depth(lam: float) -> float:  # non-increasing in lam
        return float(grid[ideal_exits(quality, exits, lam)].mean())

    bound = float(np.abs(quality).max()) * 2 + 1.0  # beyond it every image sits at the first or last exit
    deep, shallow = -bound, bound  # depth(deep) >= mean_layers >= depth(shallow)
    for _ in range(iterations):
        middle = (deep + shallow) / 2
        if depth(middle) >= mean_layers:
            deep = middle
        else:
            shallow = middle
    rows = np.arange(len(quality))
    high, low = ideal_exits(quality, exits, deep), ideal_exits(quality, exits, shallow)
    d_high, d_low = float(grid[high].mean()), float(grid[low].mean())
    share = 1.0 if d_high == d_low else (mean_layers - d_low) / (d_high - d_low)
    return share * confusions[rows, high] + (1 - share) * confusions[rows, low]


def gate_choice(gate: ExitGate, features: np.ndarray) -> np.ndarray:
    """(N,) exit column the gate picks for each image."""
    with torch.no_grad():
        return gate.mlp(torch.from_numpy(features).float()).argmax(1).numpy()


def policy_row(table: ExitTable, choice: np.ndarray, costs: dict[str, float], label: str) -> dict[str, float | str]:
    """mIoU, mean encoder layers and mean GFLOPs per image of one exit policy on one set."""
    layers = table.layers(choice)
    gflops = costs["backbone_gate"] + layers * costs["encoder_layer"] + costs["head"]
    return {
        "policy": label,
        "miou": table.miou(choice),
        "mean_layers": float(layers.mean()),
        "gflops": float(gflops.mean()),
        "encoder_gflops": float((layers * costs["encoder_layer"]).mean()),
    }
