"""Equal-accuracy comparisons of the student's rate-accuracy curve against every baseline curve:
BD-rate over the overlapping accuracy range and byte ratios at fixed accuracies (both on each
curve's efficient frontier, interpolated in log-rate; see splitcompute_bdrate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.splitcompute.bdrate import BdRate, bd_rate, frontier, ratio_at
from benchmarks.splitcompute.rates import RatePoint

STUDENT = "student"  # the default build's students (distilled from the teacher)
STUDENT_AUGMENTED = "student (codec-augmented teacher)"  # the same recipe distilled from the fine-tuned teacher
BEST_INPUT_CODEC = "best input codec (every JPEG/WebP/PNG setting, either teacher)"
INPUT_CODEC_PREFIXES = ("JPEG", "WebP", "PNG")
# Accuracies fixed before looking at any curve: the matched-accuracy table's columns.
MATCHED_ACCURACIES = (0.70, 0.80, 0.85, 0.88, 0.90)
HIGH_ACCURACY = 0.85  # the headline range starts here: where a deployment would operate (issue 27)
SIZE_MEASURES = ("bytes_full", "bytes_payload")  # sent (frame / whole file), no headers (body / bitstream)


@dataclass(frozen=True)
class Comparison:
    baseline: str  # curve name
    bd: dict[str, BdRate | None]  # size measure -> BD-rate of the student vs this baseline
    ratios: dict[str, dict[float, float | None]]  # size measure -> accuracy -> baseline bytes / student bytes
    bd_high: dict[str, BdRate | None] = field(default_factory=dict)  # the same from HIGH_ACCURACY up


def curves(points: list[RatePoint]) -> dict[str, list[RatePoint]]:
    """Curve name -> its points, plus the envelope of all input-codec points as one curve."""
    named: dict[str, list[RatePoint]] = {}
    for p in points:
        named.setdefault(p.method, []).append(p)
    named[BEST_INPUT_CODEC] = [p for p in points if p.method.startswith(INPUT_CODEC_PREFIXES)]
    return named


def _series(points: list[RatePoint], measure: str) -> tuple[list[float], list[float]]:
    return [getattr(p, measure) for p in points], [p.accuracy for p in points]


def is_curve(points: list[RatePoint], measure: str = "bytes_full") -> bool:
    return len(points) > 0 and frontier(*_series(points, measure))[0].size >= 2


def compare(points: list[RatePoint], student_curve: str = STUDENT) -> list[Comparison]:
    """One student curve vs every non-student curve with at least two efficient points."""
    named = curves(points)
    student = named.get(student_curve, [])
    if not (is_curve(student) and is_curve(student, "bytes_payload")):
        return []
    rows = []
    for name, baseline in named.items():
        if name.startswith(STUDENT):
            continue
        if not (is_curve(baseline) and is_curve(baseline, "bytes_payload")):
            continue
        bd = {m: bd_rate(_series(baseline, m), _series(student, m)) for m in SIZE_MEASURES}
        ratios = {m: {a: ratio_at(_series(baseline, m), _series(student, m), a) for a in MATCHED_ACCURACIES}
                  for m in SIZE_MEASURES}
        high = {m: bd_rate(_series(baseline, m), _series(student, m), HIGH_ACCURACY) for m in SIZE_MEASURES}
        rows.append(Comparison(name, bd, ratios, high))
    return rows


def codec_context(points: list[RatePoint], teacher: str) -> dict[str, Any] | None:
    """How the learned image codec stands against JPEG 4:4:4 with the same teacher: its BD-rate (positive =
    more bytes than JPEG) and its bytes / JPEG's at the matched accuracies both reach; None without both."""
    named = curves(points)
    codec, jpeg = named.get(f"learned image codec -> {teacher}", []), named.get(f"JPEG 4:4:4 -> {teacher}", [])
    if not all(is_curve(c, m) for c in (codec, jpeg) for m in SIZE_MEASURES):
        return None
    ratios = {m: {a: None if (r := ratio_at(_series(jpeg, m), _series(codec, m), a)) is None else 1 / r
                  for a in MATCHED_ACCURACIES} for m in SIZE_MEASURES}
    return {"bd": {m: bd_rate(_series(jpeg, m), _series(codec, m)) for m in SIZE_MEASURES}, "ratios": ratios}
