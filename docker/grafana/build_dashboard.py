"""Writes docker/grafana/dashboards/infersuite.json, the suite's Grafana dashboard.

`python docker/grafana/build_dashboard.py` regenerates it; `--check` exits 1 when the committed
JSON differs (tests/deploy runs it). Panels read the raw histograms with $__rate_interval, so
they work without the recording rules; the error ratio reads the recorded series.
"""

from __future__ import annotations

import argparse
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


def panels() -> list[dict]:
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
        timeseries("ctr: candidates and history per request (p50 / p99)", "short", [
            (quantile(0.5, "infersuite_ctr_candidates", "job", ""), "candidates p50"),
            (quantile(0.99, "infersuite_ctr_candidates", "job", ""), "candidates p99"),
            (quantile(0.5, "infersuite_ctr_history_length", "job", ""), "history p50"),
            (quantile(0.99, "infersuite_ctr_history_length", "job", ""), "history p99")]),
        timeseries("segmentation: encoder layers used (mean) by effort", "short", [
            (mean("infersuite_segmentation_encoder_layers", "effort"), "{{effort}}")]),
        timeseries("segmentation: GFLOPs per request (mean) by effort", "short", [
            (mean("infersuite_segmentation_gflops", "effort"), "{{effort}}")]),
        timeseries("splitcompute: payload bytes (p50 / p99) and bytes/s", "bytes", [
            (quantile(0.5, "infersuite_splitcompute_payload_bytes", "job", ""), "payload p50"),
            (quantile(0.99, "infersuite_splitcompute_payload_bytes", "job", ""), "payload p99"),
            ("sum (rate(infersuite_splitcompute_payload_bytes_sum[$__rate_interval]))", "bytes/s on the wire")]),
        timeseries("splitcompute: entropy decode p99", "s", [
            (quantile(0.99, "infersuite_splitcompute_entropy_decode_duration_seconds", "job", ""), "decode p99")]),
        timeseries("audio: seconds of audio processed per second", "short", [(
            "sum by (method, embedder) (rate(infersuite_audio_input_duration_seconds_sum[$__rate_interval]))",
            "{{method}} {{embedder}}")]),
    ]


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


def dashboard() -> dict:
    return {
        "uid": "infersuite-overview", "title": "infersuite", "tags": ["infersuite"], "editable": False,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "timezone": "utc", "graphTooltip": 1,
        "templating": {"list": [
            variable("service", f'label_values(infersuite_requests_total{{service=~"{SERVICES}"}}, service)'),
            variable("model", "label_values(infersuite_model_ready, model)")]},
        "annotations": {"list": []},
        "panels": layout(panels()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    text = json.dumps(dashboard(), indent=2) + "\n"
    if parser.parse_args().check:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
