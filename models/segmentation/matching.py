"""Mask2Former's set loss for semantic segmentation (Cheng et al., CVPR 2022, sec. 3.3 and 4):

- targets: one binary mask per class present in the image (background included), with its class;
  the losses of a batch are computed batched, only the assignment runs per image;
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


def sampled_targets(labels: torch.Tensor, points: torch.Tensor, n_classes: int) -> torch.Tensor:
    """labels (B, H, W), points (B, P, 2) in [0, 1] (x, y) -> (B, C, P) float: 1 where the point's
    pixel belongs to class c (nearest pixel: the label map has no sub-pixel values)."""
    b, h, w = labels.shape
    cols = (points[..., 0] * w).long().clamp(0, w - 1)
    rows = (points[..., 1] * h).long().clamp(0, h - 1)
    ids = labels[torch.arange(b)[:, None], rows, cols]  # (B, P)
    return F.one_hot(ids, n_classes).transpose(1, 2).float()


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """masks (B, Q, h, w), points (B, P, 2) in [0, 1] (x, y) -> (B, Q, P) bilinear samples."""
    return F.grid_sample(masks, (2 * points - 1)[:, None], align_corners=False)[:, :, 0]


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, Q, P), (B, K, P) -> (B, Q, K) 1 - dice of every pair."""
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.transpose(1, 2) + 1) / (p.sum(-1)[..., None] + targets.sum(-1)[:, None] + 1)


def bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, Q, P), (B, K, P) -> (B, Q, K) mean BCE of every pair."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (positive @ targets.transpose(1, 2) + negative @ (1 - targets).transpose(1, 2)) / logits.shape[-1]


@torch.no_grad()
def hungarian(class_logits: torch.Tensor, mask_points: torch.Tensor, present: torch.Tensor,
              target_points: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(B, Q, C+1), (B, Q, P), (B, C) bool classes present, (B, C, P) -> per image (query rows,
    class ids) of the matching (the classes present are the targets)."""
    n_classes = present.shape[1]
    cost = (-CLASS_WEIGHT * class_logits.softmax(-1)[..., :n_classes]
            + MASK_WEIGHT * bce_cost(mask_points, target_points)
            + DICE_WEIGHT * dice_cost(mask_points, target_points)).numpy()  # (B, Q, C)
    matches = []
    for i in range(len(cost)):
        classes = np.flatnonzero(present[i].numpy())
        rows, cols = linear_sum_assignment(cost[i][:, classes])
        matches.append((rows, classes[cols]))
    return matches


def set_loss(class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """One prediction step: (B, Q, C+1), (B, Q, h, w) and the labels (B, H, W) -> scalar loss."""
    b, q, n_outputs = class_logits.shape
    no_object = n_outputs - 1
    points = torch.rand(b, POINTS, 2, generator=generator)
    mask_points = point_sample(mask_logits, points)  # (B, Q, P)
    target_points = sampled_targets(labels, points, no_object)  # (B, C, P)
    present = F.one_hot(labels.flatten(1), no_object).amax(1).bool()  # (B, C)
    matches = hungarian(class_logits.detach(), mask_points.detach(), present, target_points)
    image = torch.cat([torch.full((len(r),), i) for i, (r, _) in enumerate(matches)])
    query = torch.from_numpy(np.concatenate([r for r, _ in matches])).long()
    target = torch.from_numpy(np.concatenate([c for _, c in matches])).long()
    class_targets = torch.full((b, q), no_object, dtype=torch.long)
    class_targets[image, query] = target
    weights = torch.ones(n_outputs)
    weights[no_object] = NO_OBJECT_WEIGHT
    class_loss = F.cross_entropy(class_logits.reshape(b * q, -1), class_targets.reshape(-1), weight=weights)
    predicted, wanted = mask_points[image, query], target_points[image, target]  # (M, P)
    mask_loss = F.binary_cross_entropy_with_logits(predicted, wanted)
    p = predicted.sigmoid()
    dice = 1 - (2 * (p * wanted).sum(-1) + 1) / (p.sum(-1) + wanted.sum(-1) + 1)
    return CLASS_WEIGHT * class_loss + MASK_WEIGHT * mask_loss + DICE_WEIGHT * dice.mean()


def decoder_loss(predictions: list[tuple[torch.Tensor, torch.Tensor]], labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """Mean set loss over every prediction step of the decoder (final + auxiliary)."""
    return torch.stack([set_loss(c, m, labels, generator) for c, m in predictions]).mean()
