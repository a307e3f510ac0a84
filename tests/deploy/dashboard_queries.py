"""The Grafana dashboard's queries and the metric names they read (shared by the deploy tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards" / "infersuite.json"
METRIC_TOKEN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def strip_strings_and_matchers(expr: str) -> str:
    return re.sub(r"\{[^}]*\}", "", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr))


def base_name(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total)$", "", name)


def dashboard_metric_names() -> set[str]:
    """Raw metric names (histogram/counter suffixes removed) the dashboard's queries read."""
    tokens = {t for expr in dashboard_exprs() for t in METRIC_TOKEN.findall(strip_strings_and_matchers(expr))}
    return {base_name(t) for t in tokens if t.startswith("infersuite_")}
