"""Seeds and intervals for reports/ctr_quality.md: mean +- sd over seeds and a paired bootstrap.

A record is one model (or graph) scored on a world's test users with one seed:
{"name", "seed", "test": {"auc", "gauc", "per_user": {user: [impressions, auc]}}, "metrics"?}.
A comparison A - B uses the seeds both have: the per-seed GAUC differences (mean +- sd), and the
seed-averaged per-user AUC differences resampled over test users (models.ctr.metrics.paired_bootstrap),
which gives the interval of the GAUC difference that the test set's size allows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from models.ctr.metrics import paired_bootstrap, rela_impr


def by_name(records: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    grouped: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        grouped[record["name"]][int(record["seed"])] = record
    return dict(grouped)


def mean_sd(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def summary(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean +- sd of test GAUC/AUC (and epochs, when trained) over the seeds of one model."""
    seeds = sorted(runs)
    out: dict[str, Any] = {"seeds": seeds,
                           "gauc": mean_sd([runs[s]["test"]["gauc"] for s in seeds]),
                           "auc": mean_sd([runs[s]["test"]["auc"] for s in seeds])}
    if all("metrics" in runs[s] for s in seeds):
        out["epochs_run"] = [runs[s]["metrics"]["epochs_run"] for s in seeds]
        out["best_epoch"] = [runs[s]["metrics"]["best_epoch"] for s in seeds]
        out["plateaued"] = [bool(runs[s]["metrics"]["plateaued"]) for s in seeds]
    return out


def _per_user(runs: dict[int, dict[str, Any]], seeds: list[int], users: list[str]) -> np.ndarray:
    """(U,) per-user AUC averaged over `seeds`."""
    return np.mean([[runs[s]["test"]["per_user"][u][1] for u in users] for s in seeds], axis=0)


def compare(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], resamples: int = 2000) -> dict[str, Any]:
    """A - B in test GAUC over their common seeds: per-seed mean +- sd and the paired bootstrap."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common")
    users = sorted(set.intersection(*(set(r["test"]["per_user"]) for r in (*a.values(), *b.values()))))
    weights = np.array([a[seeds[0]]["test"]["per_user"][u][0] for u in users], dtype=np.float64)
    point, low, high = paired_bootstrap(weights, _per_user(a, seeds, users) - _per_user(b, seeds, users), resamples)
    per_seed = [a[s]["test"]["gauc"] - b[s]["test"]["gauc"] for s in seeds]
    return {"seeds": seeds, "per_seed": per_seed, "per_seed_mean_sd": mean_sd(per_seed),
            "bootstrap": [point, low, high], "users": len(users)}


def reading(result: dict[str, Any], a: str, b: str) -> str:
    """Plain words for an interval: which side it excludes, if any."""
    _, low, high = result["bootstrap"]
    if low > 0:
        return f"{a} better"
    if high < 0:
        return f"{b} better"
    return "not resolved (interval spans 0)"


def _pm(pair: tuple[float, float] | list[float], digits: int = 4) -> str:
    mean, sd = pair
    return f"{mean:.{digits}f} (1 seed)" if np.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def model_table(grouped: dict[str, dict[int, dict[str, Any]]], labels: dict[str, str],
                baseline: str | None = None) -> list[str]:
    """Markdown rows: model | seeds | GAUC | AUC | RelaImpr vs baseline | epochs run | best epoch."""
    lines = ["| model | seeds | test GAUC (mean ± sd) | test AUC (mean ± sd) | RelaImpr GAUC | epochs run "
             "| best epoch |", "|---|---|---|---|---|---|---|"]
    base = summary(grouped[baseline])["gauc"][0] if baseline in grouped else None
    for name, label in labels.items():
        if name not in grouped:
            lines.append(f"| {label} | 0 | not run | | | | |")
            continue
        s = summary(grouped[name])
        relative = f"{rela_impr(s['gauc'][0], base):+.2f}%" if base is not None else ""
        epochs = ", ".join(str(e) + ("" if p else "*") for e, p in zip(s.get("epochs_run", []), s.get("plateaued", []),
                                                                        strict=True))
        best = ", ".join(str(e) for e in s.get("best_epoch", []))
        lines.append(f"| {label} | {len(s['seeds'])} | {_pm(s['gauc'])} | {_pm(s['auc'])} | {relative} | {epochs} "
                     f"| {best} |")
    return lines


def comparison_table(grouped: dict[str, dict[int, dict[str, Any]]], labels: dict[str, str],
                     pairs: list[tuple[str, str]]) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows for A - B comparisons, and the figures as a dict for the JSON."""
    lines = ["| A - B | seeds | ΔGAUC per seed (mean ± sd) | ΔGAUC, paired bootstrap over users [95% interval] "
             "| reading |", "|---|---|---|---|---|"]
    figures = {}
    for a, b in pairs:
        if a not in grouped or b not in grouped:
            continue
        result = compare(grouped[a], grouped[b])
        point, low, high = result["bootstrap"]
        label_a, label_b = labels.get(a, a), labels.get(b, b)
        lines.append(f"| {label_a} - {label_b} | {len(result['seeds'])} | {_pm(result['per_seed_mean_sd'])} | "
                     f"{point:+.4f} [{low:+.4f}, {high:+.4f}] | {reading(result, label_a, label_b)} |")
        figures[f"{a} - {b}"] = result
    return lines, figures
