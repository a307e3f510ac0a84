"""Segmentation quality: dataset mIoU from a confusion matrix, and per-image mIoU (the q_k of
ECO-M2F's derived dataset). Works on numpy arrays so the ONNX and gRPC paths can use it too.

Pixels labelled IGNORE_LABEL count for no class: every figure here leaves them out (ground truth
and prediction alike), as the training loss does (models/segmentation/train.py)."""

from __future__ import annotations

import warnings

import numpy as np

IGNORE_LABEL = 255  # label-map value of pixels that count for no class (a user's ignore index maps to it)


def confusion(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) pixel counts, rows = ground truth, columns = prediction (IGNORE_LABEL
    pixels left out)."""
    keep = labels.ravel() != IGNORE_LABEL
    index = labels.ravel()[keep].astype(np.int64) * n_classes + predicted.ravel()[keep].astype(np.int64)
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


def iou_counts(matrix: np.ndarray) -> np.ndarray:
    """(..., C, C) confusions -> (..., 3 C) counts that add over images: each class's intersection, ground-truth
    pixels and predicted pixels (all that dataset mIoU needs; `mean_iou_of_counts` turns their sum into it)."""
    inter = np.diagonal(matrix, axis1=-2, axis2=-1)
    return np.concatenate([inter, matrix.sum(-1), matrix.sum(-2)], -1).astype(np.float64)


def mean_iou_of_counts(counts: np.ndarray) -> np.ndarray:
    """(..., 3 C) summed `iou_counts` -> (...) dataset mIoU over the classes in the ground truth or predictions
    (NaN where there is none)."""
    inter, truth, predicted = np.split(np.asarray(counts, np.float64), 3, axis=-1)
    union = truth + predicted - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        present = (union > 0).sum(-1)
        return np.where(present > 0, np.nansum(iou, -1) / np.maximum(present, 1), np.nan)


def per_image_miou(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) mIoU of each image over the classes present in its ground truth or its prediction
    (IGNORE_LABEL pixels left out; NaN for an image with no other pixel)."""
    flat = labels.reshape(len(labels), -1)
    keep = (flat != IGNORE_LABEL)[..., None]  # (N, P, 1)
    pred = np.eye(n_classes, dtype=bool)[predicted.reshape(len(predicted), -1)] & keep  # (N, P, C)
    true = np.eye(n_classes, dtype=bool)[np.where(keep[..., 0], flat, 0)] & keep
    inter = (pred & true).sum(1)  # (N, C)
    union = (pred | true).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": an all-ignored image
        return np.nanmean(iou, axis=1)


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels where two masks of the same shape agree."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean(a == b))
