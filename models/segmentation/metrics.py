"""Segmentation quality: dataset mIoU from a confusion matrix, and per-image mIoU (the q_k of
ECO-M2F's derived dataset). Works on numpy arrays so the ONNX and gRPC paths can use it too."""

from __future__ import annotations

import numpy as np


def confusion(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) pixel counts, rows = ground truth, columns = prediction."""
    index = labels.astype(np.int64).ravel() * n_classes + predicted.astype(np.int64).ravel()
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU of every class (NaN for a class absent from both ground truth and predictions); a
    (..., C, C) stack of matrices gives (..., C)."""
    inter = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    union = matrix.sum(-2) + matrix.sum(-1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Dataset mIoU in [0, 1]: IoU per class over all pixels of the set, averaged over classes."""
    return float(np.nanmean(iou_per_class(matrix)))


def per_image_miou(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) mIoU of each image over the classes present in its ground truth or its prediction."""
    pred = np.eye(n_classes, dtype=bool)[predicted.reshape(len(predicted), -1)]  # (N, P, C)
    true = np.eye(n_classes, dtype=bool)[labels.reshape(len(labels), -1)]
    inter = (pred & true).sum(1)  # (N, C)
    union = (pred | true).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return np.nanmean(iou, axis=1)


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels where two masks of the same shape agree."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean(a == b))
