"""Seeds and intervals for reports/ctr_quality.md: mean +- sd over seeds and a paired bootstrap.

A record is one model (or graph) scored on a world's test users with one seed:
{"name", "seed", "test": {"auc", "gauc", "per_user": {user: [impressions, auc]}}, "metrics"?}.
A comparison A - B uses the seeds both have: the per-seed GAUC differences (mean +- sd); the verdict's
interval, which includes training variance: the hierarchical bootstrap over seeds x test users
(models.statistics, 5,000 resamples, impressions as weights), or, when only a report's .json is left
(per-seed summaries, no per-user table), models.statistics.seed_level_interval; and, beside it, the
seed-averaged per-user AUC differences resampled over test users only (models.ctr.metrics.paired_bootstrap),
which treats the trained models as fixed: it ignores training variance and is never the verdict.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from models.ctr.metrics import paired_bootstrap, rela_impr
from models.statistics import RULE, SEED_RULE, Interval, hierarchical_bootstrap, seed_level_interval


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
    per_seed_users = np.array([[a[s]["test"]["per_user"][u][1] - b[s]["test"]["per_user"][u][1] for u in users]
                               for s in seeds])  # (S, U)
    found = hierarchical_bootstrap(per_seed_users, weights)
    return {"seeds": seeds, "per_seed": per_seed, "per_seed_mean_sd": mean_sd(per_seed),
            "bootstrap": [point, low, high], "users": len(users),
            "seed_level": [found.estimate, found.low, found.high], "seed_level_method": "hierarchical"}


def interval_of(result: dict[str, Any]) -> Interval:
    """The verdict's interval of a comparison: its hierarchical bootstrap when the run kept one, else the
    seed-level interval from its per-seed differences and users-only bootstrap (a re-render of an older
    .json)."""
    seeds, users = len(result["seeds"]), int(result["users"])
    if result.get("seed_level_method") == "hierarchical":
        estimate, low, high = result["seed_level"]
        return Interval(estimate, low, high, seeds, users, 5000, 0.95)
    return seed_level_interval(np.asarray(result["per_seed"]), tuple(result["bootstrap"][1:]), units=users)


def rule_of(figures: dict[str, Any]) -> str:
    """The rule a report's comparisons were judged by (both, when a re-render mixes old and new runs)."""
    methods = {r.get("seed_level_method", "seed-t") for r in figures.values()}
    return " / ".join(text for method, text in (("hierarchical", RULE), ("seed-t", SEED_RULE)) if method in methods)


def reading(result: dict[str, Any], a: str, b: str) -> str:
    """Plain words for the seed-level interval: which side it excludes, if any."""
    interval = interval_of(result)
    if interval.seeds < 2:
        return interval.verdict
    if interval.low > 0:
        return f"{a} better"
    if interval.high < 0:
        return f"{b} better"
    return "unresolved (interval holds 0)"


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
    figures = {f"{a} - {b}": compare(grouped[a], grouped[b]) for a, b in pairs if a in grouped and b in grouped}
    return comparison_rows(figures, labels, pairs), figures


def comparison_rows(figures: dict[str, Any], labels: dict[str, str], pairs: list[tuple[str, str]]) -> list[str]:
    """The comparison table from the figures (a run's, or a committed .json's on a re-render)."""
    lines = ["| A - B | seeds | ΔGAUC per seed (mean ± sd) | ΔGAUC, seed-level 95% interval (training variance "
             "included) | reading | users-only paired bootstrap (ignores training variance) |",
             "|---|---|---|---|---|---|"]
    for a, b in pairs:
        result = figures.get(f"{a} - {b}")
        if result is None:
            continue
        interval = interval_of(result)
        _, low, high = result["bootstrap"]
        label_a, label_b = labels.get(a, a), labels.get(b, b)
        lines.append(f"| {label_a} - {label_b} | {len(result['seeds'])} | {_pm(result['per_seed_mean_sd'])} | "
                     f"{interval.estimate:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}] | "
                     f"{reading(result, label_a, label_b)} | [{low:+.4f}, {high:+.4f}] |")
    return lines
