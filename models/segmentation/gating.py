"""ECO-M2F steps 2 and 3: the derived dataset and the gating network.

Step 2 (paper sec. 3.3): for every training image, the quality q_k of the early-exit parent at
each exit k (here per-image mIoU in [0, 1]), and the ideal exit

    k* = argmax_k (q_k - beta * k)                                       (beta >= 0)

so one more encoder layer must buy at least beta of per-image mIoU to be worth running.
Step 3 (sec. 3.4): the gate (pooled encoder-input tokens -> MLP -> exit logits) is trained with
cross-entropy on k*, the parent frozen. Changing beta re-runs only these two steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.segmentation.eco_m2f import ExitGate
from models.segmentation.metrics import mean_iou


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


def train_gate(
    gate: ExitGate,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
) -> ExitGate:
    """Fits the gate's MLP to the derived dataset (features = `ExitGate.pooled` of the images)."""
    torch.manual_seed(seed)
    for module in gate.mlp:
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            module.reset_parameters()
    x, y = torch.from_numpy(features).float(), torch.from_numpy(targets).long()
    optimizer = torch.optim.AdamW(gate.mlp.parameters(), lr=lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    gate.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(gate.mlp(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    gate.eval()
    return gate


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
