"""Reliability report: every scenario of the reliability issue, its load, what was injected, the
outcome and the figures, in reports/reliability.md (+ reliability.json with every number).

    python -m benchmarks.reliability.measure                                   # full: 30 s overload, 10 min soak
    python -m benchmarks.reliability.measure --overload-s 10 --soak-s 120      # reduced (the report says so)

The scenarios are the ones the reliability tests run (tests/reliability/scenarios.py), here for
minutes and on real suite processes: the known-cost model (tests/reliability/sleepy.py) and the ctr
service on a tiny DIN (trained in seconds when --repository is not given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from benchmarks.reliability import report
from benchmarks.serving.machine import Window, all_cores, take_sample
from infersuite.loadtest.local_suite import SUITE_COMMAND, ServerProcess, loopback_settings
from tests.reliability import hostile, scenarios, sleepy
from tests.reliability.load import metric, open_loop, scrape
from tests.reliability.requests import ctr_requests

ROOT = Path(__file__).resolve().parents[2]
CTR_MODEL = "din-fp32"
CRASH_PREFIXES = ("crash-", "oom-", "timeout-")  # libFuzzer's artifacts


def checkout_suite(env: Mapping[str, str], command: Sequence[str] = SUITE_COMMAND,
                   stderr: int | None = None) -> ServerProcess:
    """A suite process (python -m infersuite.services, or the sleepy module) run from this checkout."""
    return ServerProcess({"PYTHONPATH": str(ROOT), **env}, command=command, cwd=ROOT, stderr=stderr)


def sleepy_suite(compute_ms: float, queue: int, grace_s: float = 5.0) -> ServerProcess:
    return checkout_suite({}, [sys.executable, "-m", "tests.reliability.sleepy", "--compute-ms", str(compute_ms),
                               "--queue", str(queue), "--grace", str(grace_s)])


def ctr_settings(repository: Path, **env: str) -> dict[str, str]:
    """The environment of a ctr suite process on `repository` (one worker unless `env` says otherwise)."""
    return {**loopback_settings(repository, INFERSUITE_INTRA_OP_THREADS="1"), **env}


def ctr_suite(repository: Path, **env: str) -> ServerProcess:
    return checkout_suite(ctr_settings(repository, **env))


def set_queue(repository: Path, queue: int) -> None:
    config = repository / CTR_MODEL / "config.pbtxt"
    config.write_text(re.sub(r"max_queue_size: \d+", f"max_queue_size: {queue}", config.read_text()))


def build_ctr_repository(work: Path, queue: int) -> tuple[Path, int, int]:
    """A tiny DIN (as tests/conftest.py's tiny_ctr), its queue bound sized for the SLO."""
    from exporters.ctr import export_din
    from exporters.repository import set_default_alias
    from models.ctr.data import ClickDataConfig, make_click_data
    from models.ctr.train import TrainConfig, save_checkpoint, train_variant

    data = make_click_data(ClickDataConfig(n_users=600, n_items=120, n_categories=8, max_history=20, seed=3))
    model, metrics = train_variant("din_dice", data, TrainConfig(epochs=1, batch_size=64), progress=False)
    save_checkpoint(work / "din.pt", model, metrics, data)
    export_din(work / "din.pt", work / "repo", CTR_MODEL)
    set_default_alias(work / "repo", "din", CTR_MODEL)
    set_queue(work / "repo", queue)
    return work / "repo", data.config.n_items, data.config.n_categories


async def run_overload(suite: ServerProcess, make, sustainable: float, duration_s: float, slo_ms: float,
                       queue: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        await open_loop(channel, make, 0.5 * sustainable, 2.0)  # warm-up (compute-time estimate)
        figures = await scenarios.overload(channel, make, sustainable, duration_s, recovery_s=10.0)
    return {**figures, "sustainable_rps": round(sustainable, 1), "slo_ms": slo_ms, "queue": queue}


async def run_sweep(suite: ServerProcess, make, rates: list[float], step_s: float, slo_ms: float,
                    min_ok_share: float = 1.0, retries: int = 0):
    async with grpc.aio.insecure_channel(suite.target) as channel:
        await open_loop(channel, make, rates[0], 2.0)  # warm-up
        return await scenarios.sustainable_rate(channel, make, rates, step_s, slo_ms, min_ok_share, retries)


class SweptCtr(NamedTuple):
    repository: Path
    n_items: int
    n_categories: int
    make: Any  # request factory
    sustainable: float  # req/s
    steps: list[dict[str, Any]]


async def swept_ctr(work: Path, queue: int, args: argparse.Namespace,
                    start: Callable[[Path], ServerProcess]) -> SweptCtr:
    """A tiny DIN repository in `work`, its request factory, and its sustainable rate swept on a suite `start`
    serves (args: candidates, history, rate_start, sweep_step_s, slo_ms)."""
    repository, n_items, n_categories = build_ctr_repository(work, queue)
    make = ctr_requests(n_items, n_categories, candidates=args.candidates, history=args.history)
    suite = start(repository)
    try:
        await suite.ready()
        rates = [args.rate_start * (1.25 ** i) for i in range(30)]
        sustainable, sweep = await run_sweep(suite, make, rates, args.sweep_step_s, args.slo_ms)
    finally:
        suite.stop()
    return SweptCtr(repository, n_items, n_categories, make, sustainable, sweep)


async def run_deadlines(suite: ServerProcess, make, capacity: float, duration_s: float, model: str,
                        short_deadline_s: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        before = scrape(suite.metrics_url)
        figures = await scenarios.deadlines_and_cancellation(channel, make, suite.metrics_url, model, capacity,
                                                             duration_s, short_deadline_s)
        after = scrape(suite.metrics_url)
    figures.pop("loss_times")
    # Requests that reached compute: the batch size counts requests (a DIN request holds one row per
    # candidate, so the rows metric would count candidates).
    figures["requests_computed"] = metric(after, "infersuite_model_batch_size_sum", model=model) - \
        metric(before, "infersuite_model_batch_size_sum", model=model)
    return figures


async def run_shutdown(suite: ServerProcess, make, rate: float, grace_s: float) -> dict[str, Any]:
    figures = await scenarios.graceful_shutdown(suite.proc, suite.port, make, rate, before_s=3.0, after_s=2.0,
                                                grace_s=grace_s)
    return {**figures.__dict__, "rate_rps": rate}


async def run_reload(suite: ServerProcess, repository: Path, make) -> dict[str, Any]:
    """Broken version 2 dropped into the repository the suite polls, then a good one, under load."""
    url = suite.metrics_url
    async with grpc.aio.insecure_channel(suite.target) as channel:
        load = asyncio.create_task(open_loop(channel, make, 50.0, 8.0))
        version = repository / CTR_MODEL / "2"
        version.mkdir()
        (version / "model.onnx").write_bytes(b"not an onnx file")
        await asyncio.sleep(2.0)
        failures = metric(scrape(url), "infersuite_model_load_failures_total", model=CTR_MODEL)
        index = await service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            service_pb2.RepositoryIndexRequest())
        failed = [(m.version, m.state, m.reason) for m in index.models if m.name == CTR_MODEL]
        for name in ("model.onnx", "meta.json"):
            shutil.copy(repository / CTR_MODEL / "1" / name, version / name)
        await asyncio.sleep(3.0)
        result = await load
        served = metric(scrape(url), "infersuite_model_compute_duration_seconds_count", model=CTR_MODEL, version="2")
    return {"load": result.summary(), "load_failures_total": failures, "repository_index_after_failure": failed,
            "executions_on_v2_after_good_copy": served}


async def run_hostile(suite: ServerProcess, n_items: int, n_categories: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        model = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            service_pb2.ModelMetadataRequest(name=CTR_MODEL))
        specs = [(t.name, t.datatype, len(t.shape)) for t in model.inputs]
        corpus = hostile.ctr_cases(n_items, n_categories, 500) + hostile.oip_cases(CTR_MODEL, specs)
        wrong: list[list[str]] = []
        codes: dict[str, int] = {}
        for case in corpus:
            try:
                await channel.unary_unary(case.method)(case.payload, timeout=30)
                code, details = "OK", ""
            except grpc.aio.AioRpcError as err:
                code, details = err.code().name, err.details() or ""
            codes[code] = codes.get(code, 0) + 1
            if code not in case.codes or (code != "OK" and not details):
                wrong.append([case.name, code, details[:120]])
        status = (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())).status
    internal = metric(scrape(suite.metrics_url), "infersuite_requests_total", code="INTERNAL")
    return {"cases": len(corpus), "codes": codes, "wrong": wrong, "healthy_after": status == 1,
            "internal_errors": internal}


def run_fuzz(runs: int, work: Path) -> list[dict[str, Any]]:
    results = []
    for harness, corpus in [("wav_decoder", "wav"), ("image_decoder", "image"),
                            ("splitcompute_payload", "splitcompute")]:
        shutil.copytree(ROOT / "fuzz" / "corpus" / corpus, work / corpus)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", f"fuzz.{harness}", f"-runs={runs}", "-rss_limit_mb=1024",
                               "-timeout=10", "-max_len=4096", f"-artifact_prefix={work}/", str(work / corpus)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        cov = re.findall(r"cov: (\d+)", log)
        results.append({"harness": harness, "runs": runs, "exit_code": proc.returncode,
                        "seconds": round(time.monotonic() - start, 1), "coverage_edges": int(cov[-1]) if cov else 0,
                        "corpus_files": len(list((work / corpus).iterdir())),
                        "crashes": [p.name for p in work.iterdir() if p.name.startswith(CRASH_PREFIXES)]})
    return results


async def run_soak(suite: ServerProcess, make, rate: float, duration_s: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        return await scenarios.soak(channel, make, suite.proc.pid, rate, duration_s, warmup_s=min(30.0, duration_s / 4))


async def run_triton(repository: Path, make, work: Path) -> dict[str, Any]:
    from exporters.triton_local import TritonUnavailable
    from tests.reliability.triton_fault import triton_kill_under_load

    try:
        return await triton_kill_under_load(repository, make, work)
    except TritonUnavailable as exc:  # no tritonserver here: `make triton`
        return {"skipped": str(exc)[:500]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    out = args.out.resolve()  # recorded relative to the repository: reports never name this machine's paths
    results: dict[str, Any] = {"args": vars(args) | {"out": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT)
                                                      else out.name}}
    results["machine"] = {"started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                          "load_before": os.getloadavg()}
    before = take_sample(os.getpid())
    known = 1000.0 / args.sleepy_compute_ms
    make = sleepy.request
    suite = sleepy_suite(args.sleepy_compute_ms, 32)  # a queue the floods cannot fill by themselves
    try:
        await suite.ready()
        results["sleepy_deadlines"] = await run_deadlines(suite, make, known, args.deadline_s, sleepy.MODEL,
                                                          2 * args.sleepy_compute_ms / 1000)
    finally:
        suite.stop()
    suite = sleepy_suite(args.sleepy_compute_ms, args.sleepy_queue)
    try:
        await suite.ready()
        results["sleepy_overload"] = await run_overload(suite, make, known, args.overload_s, args.sleepy_slo_ms,
                                                        args.sleepy_queue)
        results["sleepy_shutdown"] = await run_shutdown(suite, make, 0.6 * known, grace_s=5.0)
    finally:
        suite.stop()

    repository, n_items, n_categories, make, sustainable, sweep = await swept_ctr(work, args.ctr_queue, args, ctr_suite)
    results["ctr_sweep"] = {"sustainable_rps": round(sustainable, 1), "steps": sweep}
    # The queue bound an operator sizes for the SLO: what the model serves in half the SLO at the sustainable rate.
    queue = max(4, int(0.5 * args.slo_ms / 1000 * sustainable))
    set_queue(repository, queue)
    suite = ctr_suite(repository)
    try:
        await suite.ready()
        results["ctr_overload"] = await run_overload(suite, make, sustainable, args.overload_s, args.slo_ms, queue)
        results["ctr_deadlines"] = await run_deadlines(suite, make, sustainable, args.deadline_s, CTR_MODEL, 0.005)
        results["ctr_hostile"] = await run_hostile(suite, n_items, n_categories)
        results["ctr_soak"] = await run_soak(suite, make, 0.6 * sustainable, args.soak_s)
    finally:
        suite.stop()

    suite = ctr_suite(repository, INFERSUITE_GRACE_PERIOD_S="5")
    try:
        await suite.ready()
        results["ctr_shutdown"] = await run_shutdown(suite, make, 0.9 * results["ctr_sweep"]["sustainable_rps"], 5.0)
    finally:
        suite.stop()

    reload_repo = work / "reload-repo"
    shutil.copytree(repository, reload_repo)
    suite = ctr_suite(reload_repo, INFERSUITE_REPOSITORY_POLL_S="0.5")
    try:
        await suite.ready()
        results["ctr_reload"] = await run_reload(suite, reload_repo, make)
    finally:
        suite.stop()
    results["triton_kill"] = await run_triton(repository, make, work / "triton")
    results["fuzz"] = run_fuzz(args.fuzz_runs, work / "fuzz")
    shutil.rmtree(work, ignore_errors=True)
    results["machine"] |= {"load_after": os.getloadavg(), "cores": all_cores(Window(before, take_sample(os.getpid())))}
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.measure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--overload-s", type=float, default=30.0, help="length of the 3x overload (issue: 30 s)")
    parser.add_argument("--soak-s", type=float, default=600.0, help="length of the soak at 60%% (issue: 600 s)")
    parser.add_argument("--deadline-s", type=float, default=10.0, help="length of the deadline/cancel floods")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 SLO of accepted requests")
    parser.add_argument("--sleepy-compute-ms", type=float, default=20.0, help="the known-cost model's execution")
    parser.add_argument("--sleepy-queue", type=int, default=6, help="its queue bound: (6 + 1) x 20 ms")
    parser.add_argument("--sleepy-slo-ms", type=float, default=200.0, help="p99 SLO on the known-cost model")
    parser.add_argument("--ctr-queue", type=int, default=64, help="ctr max_queue_size during the sweep (the "
                        "overload runs with a queue sized from the SLO and the sustainable rate)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rate-start", type=float, default=50.0)
    parser.add_argument("--sweep-step-s", type=float, default=4.0)
    parser.add_argument("--fuzz-runs", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    report.write(args.out)  # with the hostile-corpus sections of benchmarks/reliability/hostile.py, if run
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
