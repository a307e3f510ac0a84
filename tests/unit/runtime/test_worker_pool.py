"""Multi-worker serving without processes or sockets: core lists, worker sizing, the merged
metrics view (checked by promtool) and the rule that every worker turns SERVING together."""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import subprocess
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.metrics_merge import WorkerText, merge, scrape
from infersuite.services.runtime.settings import RuntimeSettings, parse_cpu_list
from infersuite.services.runtime.worker_pool import (
    Supervisor,
    _Worker,
    restart_backoff_s,
    worker_cores,
    worker_count,
    worker_settings,
)


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
    # Explicit model control acts on the process that takes the call: one process unless asked otherwise.
    assert worker_count(RuntimeSettings(model_control_mode="explicit", cpu_affinity="0-3")) == 1
    assert worker_count(RuntimeSettings(model_control_mode="explicit", workers=2)) == 2  # refused by __main__
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


def _supervisor_with_pipes(count: int, **settings: object) -> tuple[Supervisor, list]:
    supervisor = Supervisor(RuntimeSettings(workers=count, **settings), count)
    children = []
    for index in range(count):
        parent_end, child_end = multiprocessing.Pipe()
        supervisor.workers.append(_Worker(index, multiprocessing.Process(), parent_end))
        children.append(child_end)
    return supervisor, children


def test_no_worker_serves_until_every_worker_is_ready_then_all_serve_the_common_entries() -> None:
    supervisor, children = _supervisor_with_pipes(2)
    first, second = supervisor.workers
    supervisor._on_ready(first, ["", "infersuite.ctr.v1.CtrService", "infersuite.audio.v1.AudioService"])
    assert not any(child.poll(0.05) for child in children)  # worker 1 is still loading: nobody serves
    supervisor._on_ready(second, ["infersuite.ctr.v1.CtrService"])  # its audio models failed to load
    assert [child.recv() for child in children] == [("serve", ["infersuite.ctr.v1.CtrService"])] * 2



def _received(children: list) -> list[list]:
    return [[child.recv() for _ in iter(lambda c=child: c.poll(0.05), False)] for child in children]


async def test_a_dead_worker_is_restarted_with_backoff_and_joins_what_the_others_serve(monkeypatch) -> None:
    supervisor, children = _supervisor_with_pipes(2)
    ctr = ["", "infersuite.ctr.v1.CtrService"]
    for worker in supervisor.workers:
        supervisor._on_ready(worker, ctr)
    assert _received(children) == [[("serve", ctr)]] * 2
    restarted: list[int] = []
    monkeypatch.setattr(supervisor, "_restart", restarted.append)
    before = asyncio.get_running_loop().time()
    assert supervisor._on_death(supervisor.workers[0], "exited (status -9)") is None  # not a crash loop
    assert supervisor._on_death(supervisor.workers[0], "pipe closed") is None  # the same death, seen twice
    assert len(supervisor._deaths) == 1 and not supervisor.held and _received(children) == [[], []]
    handle = supervisor._pending[0]
    assert 0.5 <= handle.when() - before < 1.0  # first death: 0.5 s (the second would wait 1 s)
    handle._run()
    assert restarted == [0]
    # The replacement (slot 0) reports ready with one entry missing: it serves what it has of the common set.
    parent_end, child_end = multiprocessing.Pipe()
    supervisor.workers[0] = _Worker(0, multiprocessing.Process(), parent_end)
    supervisor._on_ready(supervisor.workers[0], ["infersuite.ctr.v1.CtrService"])
    assert child_end.recv() == ("serve", ["infersuite.ctr.v1.CtrService"])
    assert [restart_backoff_s(n) for n in (1, 2, 3, 7, 20)] == [0.5, 1.0, 2.0, 30.0, 30.0]


async def test_below_min_workers_the_live_ones_hold_and_serve_again_once_enough_are_back(monkeypatch) -> None:
    supervisor, children = _supervisor_with_pipes(3, min_workers=3)
    for worker in supervisor.workers:
        supervisor._on_ready(worker, [""])
    _received(children)
    monkeypatch.setattr(supervisor, "_restart", lambda index: None)
    supervisor._on_death(supervisor.workers[2], "exited (status -9)")
    assert supervisor.held and _received(children)[:2] == [[("hold",)], [("hold",)]]
    parent_end, child_end = multiprocessing.Pipe()
    supervisor.workers[2] = _Worker(2, multiprocessing.Process(), parent_end)
    supervisor._on_ready(supervisor.workers[2], [""])
    assert not supervisor.held
    assert _received(children)[:2] == [[("serve", [""])], [("serve", [""])]] and child_end.recv() == ("serve", [""])
    for handle in supervisor._pending.values():
        handle.cancel()


async def test_deaths_past_the_limit_in_the_window_or_during_start_up_end_the_server(monkeypatch) -> None:
    starting, _ = _supervisor_with_pipes(2)
    assert starting._on_death(starting.workers[1], "failed: ValueError: bad model") == 1  # nobody serves yet
    supervisor, _ = _supervisor_with_pipes(2, worker_restart_limit=2, worker_restart_window_s=60)
    for worker in supervisor.workers:
        supervisor._on_ready(worker, [""])
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    for index in (0, 1):
        assert supervisor._on_death(supervisor.workers[index], "exited (status -9)") is None
        supervisor.workers[index].alive = True  # as if restarted
    clock[0] += 61.0  # the first two deaths leave the window
    assert supervisor._on_death(supervisor.workers[0], "exited (status -9)") is None
    supervisor.workers[0].alive = True
    assert supervisor._on_death(supervisor.workers[1], "exited (status -9)") is None
    supervisor.workers[1].alive = True
    assert supervisor._on_death(supervisor.workers[0], "exited (status 1)") == 1  # 3 deaths within 60 s > 2
    for handle in supervisor._pending.values():
        handle.cancel()


async def test_each_worker_is_told_its_siblings_metrics_ports_for_the_whole_servers_statistics() -> None:
    supervisor, children = _supervisor_with_pipes(2)
    first, second = supervisor.workers
    supervisor.port = 5000  # as if worker 0 had bound it already (no worker is spawned here)
    supervisor._on_bound(first, 5000, 7001)
    assert _received(children) == [[("siblings", [])], []]
    supervisor._on_bound(second, 5000, 7002)
    assert _received(children) == [[("siblings", [7002])], [("siblings", [7001])]]
    supervisor.serving = frozenset({""})
    supervisor._pending = {}
    supervisor._on_death(second, "exited (status -9)")
    supervisor._pending[1].cancel()
    assert _received(children)[0] == [("siblings", [])]  # the dead one's statistics go with it


def test_statistics_of_two_workers_add_up() -> None:
    from infersuite.services.runtime.stats import ModelStats

    one, two = ModelStats(), ModelStats()
    one.record_request(True, 0.002)
    one.record_batch(1, 0.001)
    two.record_request(False, 0.003)
    two.record_batch(2, 0.004)
    both = one.plus(two)
    assert (both.success_count, both.failure_count, both.execution_count, both.inference_count) == (1, 1, 2, 3)
    assert both.success_ns == 2_000_000 and both.compute_ns == 5_000_000
    assert both.last_inference_ms == max(one.last_inference_ms, two.last_inference_ms)
