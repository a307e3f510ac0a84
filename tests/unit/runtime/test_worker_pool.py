"""Multi-worker serving without processes or sockets: core lists, worker sizing, the merged
metrics view (checked by promtool) and the rule that every worker turns SERVING together."""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.metrics import Metrics
from services.runtime.metrics_merge import WorkerText, merge, scrape
from services.runtime.settings import RuntimeSettings, parse_cpu_list
from services.runtime.worker_pool import Supervisor, _Worker, worker_cores, worker_count, worker_settings


def test_cpu_lists_read_like_taskset() -> None:
    assert parse_cpu_list("") == [] and parse_cpu_list("3") == [3]
    assert parse_cpu_list("0-3,6, 8-9") == [0, 1, 2, 3, 6, 8, 9]
    assert parse_cpu_list("1,1-2") == [1, 2]
    for bad in ("a", "3-1", "1-", "-2", "1;2"):
        with pytest.raises(ValueError):
            RuntimeSettings(cpu_affinity=bad)


def test_workers_get_contiguous_shares_of_the_cores_or_one_core_each() -> None:
    assert worker_cores([], 3) == [[], [], []]
    assert worker_cores([0, 1, 2, 3, 4, 5, 6, 7], 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert worker_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert worker_cores([4, 5], 3) == [[4], [5], [4]]


def test_worker_count_and_settings_follow_the_cores() -> None:
    assert worker_count(RuntimeSettings(workers=3)) == 3
    assert worker_count(RuntimeSettings(cpu_affinity="2-4")) == 3
    assert worker_count(RuntimeSettings()) >= 1
    shared = worker_settings(RuntimeSettings(port=0, metrics_port=9464), 5001, [2, 3], workers=2)
    assert (shared.port, shared.workers, shared.intra_op_threads) == (5001, 1, RuntimeSettings().intra_op_threads)
    # 0 ("onnxruntime's default: every core") would oversubscribe: a worker gets its own cores' worth.
    assert worker_settings(RuntimeSettings(intra_op_threads=0), 5001, [2, 3], workers=2).intra_op_threads == 2
    assert (shared.metrics_host, shared.metrics_port) == ("127.0.0.1", 0)  # private, scraped by the parent
    explicit = worker_settings(RuntimeSettings(intra_op_threads=4, metrics_port=-1), 5001, [], workers=2)
    assert (explicit.intra_op_threads, explicit.metrics_port) == (4, -1)


def _worker_text(requests_ok: int, latency_s: float, ready: float) -> str:
    metrics = Metrics()
    metrics.requests.labels("svc", "Score", "OK").inc(requests_ok)
    metrics.requests.labels("svc", "Score", "INVALID_ARGUMENT").inc()
    metrics.request_latency.labels("svc", "Score").observe(latency_s)
    metrics.model_ready.labels("din").set(ready)
    return generate_latest(metrics.registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_merged_view_sums_counters_and_histograms_and_keeps_gauges_per_worker() -> None:
    text = merge([WorkerText(0, _worker_text(3, 0.001, 1)), WorkerText(1, _worker_text(4, 0.2, 0)),
                  WorkerText(2, None)])
    samples = _samples(text)
    ok = ("infersuite_requests_total", (("code", "OK"), ("method", "Score"), ("service", "svc")))
    assert samples[ok] == 7
    latency = (("method", "Score"), ("service", "svc"))
    assert samples[("infersuite_request_duration_seconds_count", latency)] == 2
    assert samples[("infersuite_request_duration_seconds_sum", latency)] == pytest.approx(0.201)
    assert samples[("infersuite_request_duration_seconds_bucket", (("le", "0.001"), *latency))] == 1
    assert samples[("infersuite_model_ready", (("model", "din"), ("worker", "0")))] == 1
    assert samples[("infersuite_model_ready", (("model", "din"), ("worker", "1")))] == 0
    assert [samples[("infersuite_worker_up", (("worker", w),))] for w in "012"] == [1, 1, 0]
    assert [samples[("infersuite_worker_requests_total", (("worker", w),))] for w in "01"] == [4, 5]
    assert "_created" not in text  # per-process timestamps mean nothing once summed


def test_merged_exposition_passes_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; `make tools`)")
    texts = {7: _worker_text(3, 0.001, 1), 9: _worker_text(1, 0.01, 1)}  # metrics port -> text
    text = scrape([(0, 7), (1, 9), (2, None)], fetch=texts.get)
    assert "infersuite_requests_total" in text and 'worker="1"' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def _supervisor_with_pipes(count: int) -> tuple[Supervisor, list]:
    supervisor = Supervisor(RuntimeSettings(workers=count), count)
    children = []
    for index in range(count):
        parent_end, child_end = multiprocessing.Pipe()
        supervisor.workers.append(_Worker(index, multiprocessing.Process(), parent_end))
        children.append(child_end)
    return supervisor, children


def test_no_worker_serves_until_every_worker_is_ready_then_all_serve_the_common_entries() -> None:
    supervisor, children = _supervisor_with_pipes(2)
    supervisor._on_ready(0, ["", "infersuite.ctr.v1.CtrService", "infersuite.audio.v1.AudioService"])
    assert not any(child.poll(0.05) for child in children)  # worker 1 is still loading: nobody serves
    supervisor._on_ready(1, ["infersuite.ctr.v1.CtrService"])  # its audio models failed to load
    assert [child.recv() for child in children] == [("serve", ["infersuite.ctr.v1.CtrService"])] * 2

