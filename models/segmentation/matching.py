"""Mask2Former's set loss for semantic segmentation (Cheng et al., CVPR 2022, sec. 3.3 and 4):

- targets: one binary mask per class present in the image (background included), with its class;
- Hungarian matching of queries to targets (scipy's linear_sum_assignment) on the cost
  2 * (-p_q(c)) + 5 * BCE + 5 * dice, the masks compared on K random points (sec. 3.3, "point
  sampling": PointRend-style uniform points here, no importance sampling);
- loss = 2 * class cross-entropy (unmatched queries -> "no object", weight 0.1)
       + 5 * point-sampled BCE + 5 * dice over the matched pairs, at every prediction step
  (the auxiliary losses after each decoder layer), averaged over steps.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

CLASS_WEIGHT, MASK_WEIGHT, DICE_WEIGHT = 2.0, 5.0, 5.0
NO_OBJECT_WEIGHT = 0.1  # the "no object" class's weight in the cross-entropy (Mask2Former's eos_coef)
POINTS = 256  # sampled points per mask (the 64 x 64 image has 4096 pixels)


def semantic_targets(labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, H, W) class ids -> per image (classes (K,), masks (K, H, W) float) of the classes present."""
    targets = []
    for label in labels:
        classes = torch.unique(label)
        targets.append((classes, (label[None] == classes[:, None, None]).float()))
    return targets


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """masks (N, h, w), points (P, 2) in [0, 1] (x, y) -> (N, P) bilinear samples."""
    grid = (2 * points - 1)[None, None].expand(len(masks), -1, -1, -1)  # (N, 1, P, 2)
    return F.grid_sample(masks[:, None], grid, align_corners=False)[:, 0, 0]


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P), (K, P) -> (Q, K) 1 - dice of every pair."""
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None] + 1)


def bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P), (K, P) -> (Q, K) mean BCE of every pair."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (positive @ targets.T + negative @ (1 - targets).T) / logits.shape[1]


@torch.no_grad()
def hungarian(class_logits: torch.Tensor, mask_points: torch.Tensor, classes: torch.Tensor,
              target_points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One image: (Q, C+1), (Q, P), (K,), (K, P) -> (query rows, target columns) of the matching."""
    cost = (-CLASS_WEIGHT * class_logits.softmax(-1)[:, classes] + MASK_WEIGHT * bce_cost(mask_points, target_points)
            + DICE_WEIGHT * dice_cost(mask_points, target_points))  # (Q, K)
    return linear_sum_assignment(cost.numpy())


def set_loss(class_logits: torch.Tensor, mask_logits: torch.Tensor,
             targets: list[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator) -> torch.Tensor:
    """One prediction step: (B, Q, C+1), (B, Q, h, w) and the images' targets -> scalar loss."""
    b, q, n_classes = class_logits.shape
    no_object = n_classes - 1
    class_targets = torch.full((b, q), no_object, dtype=torch.long)
    matched_masks, matched_targets = [], []
    for i, (classes, masks) in enumerate(targets):
        points = torch.rand(POINTS, 2, generator=generator)
        mask_points, target_points = point_sample(mask_logits[i], points), point_sample(masks, points)
        rows, cols = hungarian(class_logits[i].detach(), mask_points.detach(), classes, target_points)
        class_targets[i, rows] = classes[cols]
        matched_masks.append(mask_points[rows])
        matched_targets.append(target_points[cols])
    weights = torch.ones(n_classes)
    weights[no_object] = NO_OBJECT_WEIGHT
    class_loss = F.cross_entropy(class_logits.reshape(b * q, -1), class_targets.reshape(-1), weight=weights)
    predicted, wanted = torch.cat(matched_masks), torch.cat(matched_targets)  # (M, P)
    mask_loss = F.binary_cross_entropy_with_logits(predicted, wanted)
    p = predicted.sigmoid()
    dice = 1 - (2 * (p * wanted).sum(-1) + 1) / (p.sum(-1) + wanted.sum(-1) + 1)
    return CLASS_WEIGHT * class_loss + MASK_WEIGHT * mask_loss + DICE_WEIGHT * dice.mean()


def decoder_loss(predictions: list[tuple[torch.Tensor, torch.Tensor]], labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """Mean set loss over every prediction step of the decoder (final + auxiliary)."""
    targets = semantic_targets(labels)
    return torch.stack([set_loss(c, m, targets, generator) for c, m in predictions]).mean()
