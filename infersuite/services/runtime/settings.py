"""Typed runtime settings: the one file of defaults. Every field reads `INFERSUITE_<FIELD>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def parse_cpu_list(text: str) -> list[int]:
    """taskset's list syntax: "0-3,6" -> [0, 1, 2, 3, 6]; "" -> []."""
    cores: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        last = last if dash else first
        if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
            raise ValueError(f"{part!r} is not a core or a range of cores like 0-3")
        cores.extend(c for c in range(int(first), int(last) + 1) if c not in cores)
    return cores


class RuntimeSettings(BaseSettings):
    """Settings of the serving process, shared by every service it hosts."""

    model_config = SettingsConfigDict(env_prefix="INFERSUITE_", extra="ignore")

    host: str = "[::]"
    """Address the gRPC server binds."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 lets the OS pick one (tests)."""
    metrics_host: str = "0.0.0.0"
    """Address of the Prometheus /metrics HTTP endpoint."""
    metrics_port: int = Field(9464, ge=-1, le=65535)
    """Port of the /metrics endpoint; 0 lets the OS pick one, -1 disables it."""
    services: Annotated[list[str], NoDecode] = ["*"]
    """Families this process hosts (package names under `infersuite/services/`, comma-separated or a JSON list);
    "*" = every family package found there (infersuite/services/runtime/service.py); [] = none: the Open Inference
    Protocol only."""
    model_repository: Path = Path("model_repository")
    """Triton-layout model repository: <name>/config.pbtxt, <name>/<version>/model.onnx."""
    backend: Literal["onnxruntime", "triton"] = "onnxruntime"
    """Where models run: onnxruntime in this process, or a Triton Inference Server (triton_url)
    serving the same model repository."""
    triton_url: str = "localhost:8001"
    """gRPC address of the Triton server when backend = triton."""
    triton_timeout_s: float = Field(10.0, gt=0)
    """Longest a call to Triton may take (shortened to the request's own deadline)."""
    load_retry_s: float = Field(1.0, gt=0)
    """Pause between attempts to load a model whose backend is not available yet."""
    repository_poll_s: float = Field(0.0, ge=0)
    """Seconds between checks of the model repository for a newer version of each served model,
    loaded beside the serving one and swapped in only if it loads (infersuite/services/runtime/reload.py); 0 = off."""
    model_control_mode: Literal["none", "explicit"] = "none"
    """none (Triton's default): every model in the repository is served from start-up, the hosted services'
    models among them, and RepositoryModelLoad/Unload answer FAILED_PRECONDITION. explicit (Triton's
    --model-control-mode=explicit; guard it with auth_token): only the hosted services' models and
    `load_models` load at start-up, and OIP RepositoryModelLoad/Unload load, reload and unload models."""
    load_models: Annotated[list[str], NoDecode] = []
    """explicit mode: the models to load at start-up besides the services' (Triton's --load-model),
    comma-separated or a JSON list; "*" = every model in the repository."""
    default_max_batch_size: int = Field(4, ge=0)
    """max_batch_size of a model whose config.pbtxt sets none (or that has none) and whose graph has a
    dynamic first axis on every input and output (Triton's default-max-batch-size, 4); 0 = never batch them
    (infersuite/services/runtime/autocomplete.py)."""
    execution_providers: list[str] = []
    """onnxruntime providers in order of preference; empty = the best available
    (TensorRT, CUDA, then CPU)."""
    intra_op_threads: int = Field(1, ge=0)
    """Threads one onnxruntime execution may use. 1 (default): the execution runs on its executor
    thread alone, and a process scales by workers instead (on a core shared with the event loop,
    onnxruntime's default pool measured 1.7x slower, reports/serving.md); 0 = onnxruntime's default
    (all cores). Pool threads never spin-wait, so an idle pool leaves the core to the event loop."""
    instance_count: int = Field(1, ge=1)
    """Concurrent executions per model when its config.pbtxt sets no instance_group count."""
    inline_max_ms: float = Field(2.0, ge=0.0)
    """Executions expected to take at most this many ms (the model's recent time per cell times the cells)
    run on the event loop's thread instead of the model's executor: a request to an idle model with
    nothing queued, after one yield (requests received with it queue instead, and may combine), and,
    while the model's batcher does not combine, every execution of a model with one instance (on a
    worker's one core the executor thread only takes turns with the loop, at the cost of a hand-off, a
    task and a wake-up; a combining batcher keeps the executor, so the loop takes up requests during a
    run and batches grow). Longer executions go to the executor so health checks and
    other requests are not stalled. With a queue-time bound (max_queue_time_ms, or the model's
    default_queue_policy) only the first case runs inline: executions run back to back on the loop
    slow grpc.aio's take-up of new calls, and under overload those calls would wait where admission
    cannot see them (infersuite/services/runtime/batching.py). 0 = never inline."""
    dynamic_batching: bool = True
    """Combine concurrent requests into one execution for models whose config.pbtxt has a
    dynamic_batching block; false = one request per execution (queueing and admission stay on)."""
    max_queue_time_ms: float = Field(0.0, ge=0.0)
    """Bounds each model's queue in time as well as count: a request is refused RESOURCE_EXHAUSTED (with a
    retry hint) when the queued work ahead of it, by the model's recent compute time per request, exceeds
    this, and a queued request that has waited longer leaves the queue with the same answer, uncomputed.
    A config.pbtxt's dynamic_batching.default_queue_policy.default_timeout_microseconds overrides it per
    model (as in Triton). 0 (default, as Triton) = bounded by count only: a closed loop of many clients
    on a saturated server waits longer than any SLO-sized bound (64 clients on one core: ~70 ms each),
    and a bound would refuse part of that traffic. Set it to the queue's share of the SLO (e.g. 50 for a
    100 ms p99) where latency matters more than taking every request (reports/overload.md)."""
    max_concurrent_rpcs: int = Field(0, ge=0)
    """Calls one worker works on at once: unary calls in flight plus open streams (ModelStreamInfer,
    ScoreStream). Past it a new call is refused RESOURCE_EXHAUSTED, by one of two limits
    (call_limit_pushback). The suite's: with `grpc-retry-pushback-ms` (the recent mean time of a call),
    before the request is decoded, counted in infersuite_refused_calls_total{reason="call_limit"}
    (infersuite/services/runtime/call_limit.py); on the synchronous transport, where the limit is at most
    transport_threads, on gRPC's polling thread before the call takes a thread; on grpc.aio first thing in
    its handler, health's methods not limited. gRPC's own: no pushback, uncounted, health counted (on
    grpc.aio its compiled layer refuses before any handler runs). Size it to the calls that fit the SLO
    (about the queue-time bound over the cost per request, plus the open streams a worker holds).
    0 (default) = no limit: every call is taken up and admission is the model queues'."""
    call_limit_pushback: bool | None = None
    """Which limit refuses calls past max_concurrent_rpcs: true = the suite's (pushback, counted), false =
    gRPC's own (no pushback, uncounted, less server CPU per refusal). None (default) = the transport's
    better one, measured at 3x and 10x overload (reports/overload.md): the suite's on the synchronous
    transport (a refusal costs about 1.5x gRPC's there; every goal held at 3x), gRPC's on grpc.aio (its
    refusal from a handler costs about 1.3x the compiled layer's and, where refusals outnumber the calls
    served ten to one, keeps the event loop behind: the accepted p99 went from 95 ms to 3 s)."""
    max_queue_size: int = Field(256, ge=1)
    """Queued requests per model before RESOURCE_EXHAUSTED, when config.pbtxt sets no
    default_queue_policy.max_queue_size."""
    max_padding_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Largest share of padding a batch of ragged requests may hold; requests that would exceed
    it wait for the next batch."""
    transport: Literal["aio", "sync"] = "aio"
    """How gRPC calls reach the runtime: `aio` (grpc.aio, every call a coroutine on the event loop) or
    `sync` (grpcio's synchronous server: calls on a pool of `transport_threads` threads; OIP ModelInfer
    runs on its call's thread to the end, uncombined; every other method is handed to the event loop).
    An empty RPC costs about half the server CPU on `sync`; every call in progress, open streams
    included, holds a thread (infersuite/services/runtime/sync_transport.py, reports/serving.md)."""
    transport_threads: int = Field(8, ge=1)
    """Threads of the `sync` transport (per serving process): calls worked on at once, open streams
    included; calls past it wait in gRPC's queue unless max_concurrent_rpcs refuses them."""
    stream_max_inflight: int = Field(64, ge=1)
    """Requests of one streaming RPC (OIP ModelStreamInfer, ctr ScoreStream) answered or waiting to be
    sent at once; the stream's next message is read only when one has been sent."""
    workers: int = Field(0, ge=0)
    """Serving processes sharing the gRPC port (`python -m infersuite.services`), each with its own sessions and
    batchers, behind one /metrics endpoint; 0 = one per core this process may use (or per core of
    cpu_affinity). 1 = a single process, as `build_server` runs in tests (docs/scaling.md)."""
    min_workers: int = Field(1, ge=1)
    """With several workers: health stays SERVING while at least this many serve; below it every
    live worker turns NOT_SERVING until restarted workers bring the count back."""
    worker_restart_limit: int = Field(5, ge=0)
    """A worker that dies is restarted (backoff 0.5 s doubling to 30 s); more than this many deaths
    within worker_restart_window_s is a crash loop and ends the server (exit status 1)."""
    worker_restart_window_s: float = Field(60.0, gt=0)
    """The window of worker_restart_limit."""
    cpu_affinity: str = ""
    """Cores the workers run on, taskset style ("1", "0-3", "0,2,4-5"): worker i is pinned to the
    i-th core of the list (round robin); empty = no pinning (the cores the process may use)."""
    executor_threads: int = Field(2, ge=1)
    """Threads of the runtime's executor (per serving process) for CPU-bound request work (decoding, resampling, entropy
    decoding) that every service uses, so it never runs on the event loop; bounded so that a burst
    of large requests leaves CPU for model execution."""
    executor_queue_size: int = Field(64, ge=0)
    """Jobs that may wait for an executor thread before requests needing one get RESOURCE_EXHAUSTED."""
    warmup_runs: int = Field(2, ge=0)
    """Inference runs on synthetic input at load, before health reports SERVING."""
    shutdown_drain_s: float = Field(0.0, ge=0)
    """On SIGTERM: how long health reports NOT_SERVING while requests are still accepted, so load
    balancers that poll health stop sending before the server starts refusing."""
    shutdown_refuse_s: float = Field(1.0, ge=0)
    """On SIGTERM, after the drain: for up to this long the server itself answers every new call
    UNAVAILABLE before anything runs (safe to retry), until no call has come for 50 ms, and only then
    stops its transport, whose stop would cancel the calls it had received but not yet handed over
    (near capacity, calls sent before the signal: reports/shutdown.md). 0: the transport stops at once."""
    grace_period_s: float = Field(10.0, ge=0)
    """On SIGTERM: how long in-flight requests may take to finish before the server stops."""
    max_connection_age_s: float = Field(300.0, gt=0)
    """Connections are closed gracefully after this long, so clients re-resolve and spread over replicas."""
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted or sent."""
    max_inflight_bytes: int = Field(128 * 1024 * 1024, ge=0)
    """Budget of serialized request bytes being answered at once in this process (unary calls and each
    message of a request stream); a request over it is refused with RESOURCE_EXHAUSTED and a retry
    hint before it is decoded, queued or run (a lone request is always admitted); 0 = no budget
    (infersuite/services/runtime/inflight_bytes.py)."""
    max_request_elements: int = Field(4 * 1024 * 1024, ge=1)
    """Element budget of one request (all its inputs together) for a model whose meta.json declares
    no `limits.max_elements`; also the bound of any dynamic axis that nothing else bounds
    (infersuite/services/runtime/limits.py)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain of the server; with tls_key_file, gRPC is served over TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of the server certificate."""
    tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."""
    auth_token: SecretStr | None = None
    """When set, every RPC except health checks and reflection needs `authorization: Bearer <token>`."""
    log_level: str = "INFO"
    """Python logging level."""

    @field_validator("load_models", "services", mode="before")
    @classmethod
    def _model_list(cls, value: object) -> object:
        if isinstance(value, str):  # INFERSUITE_LOAD_MODELS=a,b or '["a", "b"]' (INFERSUITE_SERVICES alike)
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
        return value

    @field_validator("cpu_affinity")
    @classmethod
    def _cpu_list(cls, value: str) -> str:
        parse_cpu_list(value)
        return value
