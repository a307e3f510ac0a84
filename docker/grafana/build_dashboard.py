"""Writes docker/grafana/dashboards/infersuite.json, the suite's Grafana dashboard.

`python docker/generate.py` regenerates it with the other deploy files (or `python
docker/grafana/build_dashboard.py` alone); `--check` exits 1 when the committed JSON differs
(tests/deploy runs it). Each family's panels come from its docker/families/<family>.toml. Panels read
the raw histograms with $__rate_interval, so they work without the recording rules; the error ratio
reads the recorded series.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "dashboards" / "infersuite.json"
DATASOURCE = {"type": "prometheus", "uid": "infersuite-prometheus"}
SERVICES = 'infersuite\\\\..*|inference\\\\.GRPCInferenceService'  # the suite's services and the OIP
RPC = f'service=~"{SERVICES}", service=~"$service"'  # no health/reflection calls
MODEL = 'model=~"$model"'


def quantile(q: float, metric: str, by: str, selector: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))"


def mean(metric: str, by: str, selector: str = "") -> str:
    return (f"sum by ({by}) (rate({metric}_sum{{{selector}}}[$__rate_interval]))"
            f" / sum by ({by}) (rate({metric}_count{{{selector}}}[$__rate_interval]))")


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def timeseries(title: str, unit: str, targets: list[tuple[str, str]], description: str = "") -> dict:
    return {"type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi"}},
            "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)]}


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def panels(family_panels: list[dict]) -> list[dict]:
    """The suite's panels, then each family's (declared in docker/families/<family>.toml)."""
    return [
        row("Requests"),
        timeseries("Request rate", "reqps", [(
            f"sum by (service, method) (rate(infersuite_requests_total{{{RPC}}}[$__rate_interval]))",
            "{{service}}/{{method}}")]),
        timeseries("Requests by status code", "reqps", [(
            f"sum by (service, code) (rate(infersuite_requests_total{{{RPC}}}[$__rate_interval]))",
            "{{service}} {{code}}")]),
        timeseries("Server-side error ratio", "percentunit", [(
            'service_method:infersuite_request_errors:ratio_rate1m{service=~"$service"}', "{{service}}/{{method}}")],
            "INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED... over all answers (recording rule)."),
        timeseries("Latency p50 / p99", "s", [
            (quantile(0.5, "infersuite_request_duration_seconds", "service, method", RPC),
             "p50 {{service}}/{{method}}"),
            (quantile(0.99, "infersuite_request_duration_seconds", "service, method", RPC),
             "p99 {{service}}/{{method}}")]),
        timeseries("Calls refused before a handler", "reqps", [(
            "sum by (reason) (rate(infersuite_refused_calls_total[$__rate_interval]))", "{{reason}}")],
            "Calls to a service or method this server does not have (counted by a catch-all handler)."),
        row("Models: queue, compute, batching"),
        timeseries("Queue vs compute time p99", "s", [
            (quantile(0.99, "infersuite_model_queue_duration_seconds", "model", MODEL), "queue {{model}}"),
            (quantile(0.99, "infersuite_model_compute_duration_seconds", "model", MODEL), "compute {{model}}")],
            "Queue time above compute time means the model needs more replicas or instances."),
        timeseries("Latency p50 per model (queue + compute)", "s", [
            (quantile(0.5, "infersuite_model_queue_duration_seconds", "model", MODEL), "queue {{model}}"),
            (quantile(0.5, "infersuite_model_compute_duration_seconds", "model", MODEL), "compute {{model}}")]),
        timeseries("Mean batch size", "short", [(mean("infersuite_model_batch_size", "model", MODEL), "{{model}}")]),
        timeseries("Mean padding ratio", "percentunit", [
            (mean("infersuite_model_padding_ratio", "model", MODEL), "{{model}}")]),
        timeseries("Queue depth and in-flight", "short", [
            (f"sum by (model) (infersuite_model_queue_depth{{{MODEL}}})", "queued {{model}}"),
            (f"sum by (model) (infersuite_model_inflight_requests{{{MODEL}}})", "in flight {{model}}")]),
        timeseries("Rejections", "reqps", [(
            f"sum by (model, reason) (rate(infersuite_model_rejected_requests_total{{{MODEL}}}[$__rate_interval]))",
            "{{model}} {{reason}}")],
            "queue_full: bounded queue; deadline: cannot finish before the caller's deadline."),
        timeseries("Models ready (replicas)", "short", [(
            f"sum by (model) (infersuite_model_ready{{{MODEL}}})", "{{model}}")]),
        timeseries("Model load failures (hot reload)", "short", [(
            f"sum by (model) (increase(infersuite_model_load_failures_total{{{MODEL}}}[$__rate_interval]))",
            "{{model}}")], "A new version failed to load or warm up; the previous version keeps serving."),
        row("Families"),
        *(family_panel(panel) for panel in family_panels),
    ]


def family_target(spec: dict) -> tuple[str, str]:
    """A docker/families/<family>.toml target: {quantile, metric}, {mean, by} or {expr}, with its legend."""
    if "quantile" in spec:
        return quantile(spec["quantile"], spec["metric"], "job", ""), spec["legend"]
    if "mean" in spec:
        return mean(spec["mean"], spec["by"]), spec["legend"]
    return spec["expr"], spec["legend"]


def family_panel(spec: dict) -> dict:
    return timeseries(spec["title"], spec["unit"], [family_target(t) for t in spec["targets"]],
                      spec.get("description", ""))


def layout(items: list[dict]) -> list[dict]:
    """Rows span the width; graphs two per line, 8 units high."""
    y, x = 0, 0
    for panel_id, panel in enumerate(items, start=1):
        panel["id"] = panel_id
        if panel["type"] == "row":
            y += 0 if x == 0 else 8
            panel["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y, x = y + 1, 0
        else:
            panel["gridPos"] = {"h": 8, "w": 12, "x": x, "y": y}
            y, x = (y, 12) if x == 0 else (y + 8, 0)
    return items


def variable(name: str, query: str) -> dict:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}}


def dashboard(family_panels: list[dict]) -> dict:
    return {
        "uid": "infersuite-overview", "title": "infersuite", "tags": ["infersuite"], "editable": False,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "timezone": "utc", "graphTooltip": 1,
        "templating": {"list": [
            variable("service", f'label_values(infersuite_requests_total{{service=~"{SERVICES}"}}, service)'),
            variable("model", "label_values(infersuite_model_ready, model)")]},
        "annotations": {"list": []},
        "panels": layout(panels(family_panels)),
    }


def render(family_panels: list[dict]) -> str:
    return json.dumps(dashboard(family_panels), indent=2) + "\n"


def main() -> int:
    """Regenerates (or --check-s) the dashboard alone; docker/generate.py writes it with every deploy file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    check = parser.parse_args().check
    spec = importlib.util.spec_from_file_location("generate", Path(__file__).resolve().parents[1] / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = sys.modules["generate"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(generate)
    text = render([panel for family in generate.families() for panel in family.panels])
    if check:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run python docker/generate.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
