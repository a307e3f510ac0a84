"""Prometheus metrics of the suite: every name starts with `infersuite_`.

Each server owns its own `CollectorRegistry`, so several servers can live in one process
(integration tests) without clashing. Durations are histograms in seconds so percentiles
aggregate across replicas.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# Latency buckets from 0.25 ms to 10 s: loopback gRPC round trips are ~0.5 ms here.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Metrics:
    """The runtime's metrics plus a factory for family-specific ones, on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "infersuite_requests", "gRPC requests handled, by final status code.",
            ["service", "method", "code"], registry=self.registry,
        )
        self.stream_requests = Counter(
            "infersuite_stream_requests", "Requests carried inside streaming RPCs, by each one's own status "
            "code (a stream counts once in infersuite_requests, with the stream's status).",
            ["service", "method", "code"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "infersuite_request_duration_seconds", "Wall time of a gRPC request in the server.",
            ["service", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.compute_time = Histogram(
            "infersuite_model_compute_duration_seconds",
            "Time of one model execution (one batch) in the backend.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.model_ready = Gauge(
            "infersuite_model_ready", "1 when the model is loaded and warmed up, else 0.",
            ["model"], registry=self.registry,
        )
        self.inflight = Gauge(
            "infersuite_model_inflight_requests", "Requests currently inside the model's backend.",
            ["model"], registry=self.registry,
        )
        self.queue_time = Histogram(
            "infersuite_model_queue_duration_seconds", "Time a request waited in the model's queue.",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "infersuite_model_batch_size", "Requests per model execution (the dynamic batcher's batch size).",
            ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry,
        )
        self.batch_rows = Histogram(
            "infersuite_model_batch_rows", "Rows per model execution (a DIN request holds one row per candidate).",
            ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096), registry=self.registry,
        )
        self.padding_fraction = Histogram(
            "infersuite_model_padding_ratio", "Share of a batch's cells that are padding (ragged inputs).",
            ["model"], buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0), registry=self.registry,
        )
        self.queue_depth = Gauge(
            "infersuite_model_queue_depth", "Requests waiting in the model's queue.",
            ["model"], registry=self.registry,
        )
        self.combining = Gauge(
            "infersuite_model_batching_combines", "1 while the model's batcher combines requests into one "
            "execution (measured cheaper per useful cell on its traffic, or not yet measured; a short probe of "
            "single executions keeps measuring), 0 when the model cannot combine or combining measured dearer.",
            ["model"], registry=self.registry,
        )
        self.rejected = Counter(
            "infersuite_model_rejected_requests", "Requests refused or dropped before compute, by reason.",
            ["model", "reason"], registry=self.registry,
        )
        self.load_failures = Counter(
            "infersuite_model_load_failures", "Model versions that failed to load or warm up (the previous "
            "version, if any, keeps serving).", ["model"], registry=self.registry,
        )
        self.nonfinite_outputs = Counter(
            "infersuite_model_nonfinite_outputs", "Requests whose model outputs held NaN or Inf (answered "
            "INTERNAL, never OK).", ["model"], registry=self.registry,
        )
        self.refused_calls = Counter(
            "infersuite_refused_calls", "Calls refused before any handler ran, by reason (unknown_method: "
            "no such service or method here; inflight_bytes: over the process's budget of request bytes being "
            "answered, INFERSUITE_MAX_INFLIGHT_BYTES, a stream's message counted alike; call_limit: past "
            "INFERSUITE_MAX_CONCURRENT_RPCS, the suite's own limit).", ["reason"],
            registry=self.registry,
        )
        self.refused_calls.labels("unknown_method")
        self.inflight_bytes = Gauge(
            "infersuite_inflight_request_bytes", "Serialized bytes of the requests being answered (unary calls "
            "and streams' messages), against INFERSUITE_MAX_INFLIGHT_BYTES.", registry=self.registry,
        )
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes...
        self._http: tuple[WSGIServer, threading.Thread] | None = None
        # Other GET paths of this listener, each answering a JSON body (a worker's /statistics, read by its
        # siblings: infersuite/services/runtime/model_manager.py).
        self.routes: dict[str, Callable[[], bytes]] = {}

    def histogram(
        self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        """A family-specific histogram on this server's registry (name must start infersuite_)."""
        if not name.startswith("infersuite_"):
            raise ValueError(f"metric {name!r} must start with infersuite_")
        return Histogram(name, doc, list(labels), buckets=list(buckets), registry=self.registry)

    def start_http(self, host: str, port: int) -> int:
        """Serves /metrics (and nothing else: 404) over HTTP on a daemon thread; returns the bound port."""
        server_class = _IPv6Server if ":" in host else ThreadingWSGIServer
        server = make_server(host.strip("[]"), port, _only_metrics(make_wsgi_app(self.registry), self.routes),
                             server_class, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        self._http = (server, thread)
        return int(server.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _only_metrics(app: WsgiApp, routes: Mapping[str, Callable[[], bytes]] | None = None) -> WsgiApp:
    """The exposition app on /metrics, `routes` (JSON bodies) on their paths; 404 on every other path."""
    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = (routes or {}).get(environ.get("PATH_INFO", ""))
        if route is not None:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [route()]
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: metrics are served at /metrics\n"]
        return app(environ, start_response)

    return serve


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        return None
