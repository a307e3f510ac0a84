"""Server bootstrap: `build_server(settings) -> (server, port)`.

The runtime knows no model family: services are found by name (`services.<name>` exposes
`SERVICE`, a `ServiceModule`). Every service's model set goes through one transaction
(infersuite/services/runtime/reload.py) at start-up, on repository polling and on explicit control, and health
follows it: a service is SERVING while its set serves (loaded, warmed up, derived) and every model
it needs is loaded, NOT_SERVING otherwise, with the reason in the log. On stop, health turns
NOT_SERVING first, then in-flight requests get the grace period to finish while new ones are
refused, then each service's set is finalized and the models close.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2_grpc

from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.backends.triton import TritonBackend
from infersuite.services.runtime.call_limit import AioCallLimit
from infersuite.services.runtime.control import ModelControl
from infersuite.services.runtime.errors import InferSuiteError, Unavailable
from infersuite.services.runtime.executor import CpuExecutor
from infersuite.services.runtime.handler_wrapper import Closing, HandlerWrapper, RegisteringServer
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.lifecycle import ServiceModels
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager, ModelSet
from infersuite.services.runtime.oip import SERVICE_NAME as OIP_SERVICE_NAME
from infersuite.services.runtime.oip import OipServicer
from infersuite.services.runtime.reflection import add_reflection
from infersuite.services.runtime.reload import ModelReloader, SetNotServed
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.security import BearerToken, server_credentials
from infersuite.services.runtime.service import ServiceModule, load_services
from infersuite.services.runtime.settings import RuntimeSettings
from infersuite.services.runtime.sync_transport import SyncHandlerWrapper, SyncTransport, refuse_unknown

log = logging.getLogger(__name__)
T = TypeVar("T")

# On stop, new calls are refused until none has come for this long (Closing, RuntimeSettings.shutdown_refuse_s).
REFUSE_QUIET_S = 0.05
REFUSE_POLL_S = 0.01
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Runtime:
    """What a service gets from the runtime."""

    settings: RuntimeSettings
    models: ModelManager
    metrics: Metrics
    lifecycles: dict[str, ServiceModels[Any]] = field(default_factory=dict)
    executor: CpuExecutor = field(init=False)
    """Where services run CPU-bound request work (infersuite/services/runtime/executor.py), never on the loop."""
    inflight_bytes: InflightBytes = field(init=False)
    """The process's budget of request bytes being answered (infersuite/services/runtime/inflight_bytes.py)."""

    def __post_init__(self) -> None:
        self.executor = CpuExecutor(self.settings.executor_threads, self.settings.executor_queue_size, self.metrics)
        self.inflight_bytes = InflightBytes.on(self.metrics, self.settings.max_inflight_bytes)

    def service_models(self, service: str, derive: Callable[[ModelSet], T],
                       finalize: Callable[[T], None] | None = None) -> ServiceModels[T]:
        """Registers what `service` derives from its models; the runtime calls `derive` on every
        load or swap of the service's model set, before that set serves, and `finalize` (default:
        nothing) with the state of a set once it is retired, or at stop (infersuite/services/runtime/lifecycle.py)."""
        lifecycle = ServiceModels(service, derive, finalize)
        self.lifecycles[service] = lifecycle
        return lifecycle

    def initialize(self, service: str, names: list[str]) -> None:
        """Serves the loaded `names` as the service's first model set (raises if it refuses them). For
        handler tests and embedders that load models themselves; the server goes through the model-set
        transaction (infersuite/services/runtime/reload.py) instead."""
        lifecycle = self.lifecycles.setdefault(service, ServiceModels.without_state(service))
        lifecycle.publish(lifecycle.prepare(self.models.model_set(names)))


class _UnknownMethods(grpc.GenericRpcHandler):
    """Catch-all for calls to a service or method this server does not have: UNIMPLEMENTED, counted
    in infersuite_refused_calls_total{reason="unknown_method"} (label values never come from the caller)."""

    def __init__(self, metrics: Metrics, sync: bool = False):
        self._count = metrics.refused_calls.labels("unknown_method")
        self._handler = grpc.stream_stream_rpc_method_handler(  # any arity: nothing is read
            refuse_unknown(self._count.inc) if sync else self._refuse)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return self._handler

    async def _refuse(self, requests: Any, context: aio.ServicerContext) -> AsyncIterator[bytes]:
        self._count.inc()
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown service or method")
        yield b""  # unreachable: makes this an async generator, as a stream handler must be


class InferSuiteServer:
    """A gRPC server (grpc.aio, or grpcio's synchronous one: `transport`) plus the runtime parts that
    live and die with it."""

    def __init__(self, settings: RuntimeSettings, services: list[ServiceModule]):
        self.settings = settings
        self.services = services
        self.metrics = Metrics()
        repository = ModelRepository(settings.model_repository)
        backend = TritonBackend(settings) if settings.backend == "triton" else OnnxRuntimeBackend(settings)
        self.models = ModelManager(repository, backend, self.metrics, settings)
        self.runtime = Runtime(settings, self.models, self.metrics)
        # Hot reload (new version beside the old, swapped only on success); polls when repository_poll_s > 0.
        required = {s.name: functools.partial(s.required_models, repository) for s in services}
        self.reloader = ModelReloader(self.models, self.runtime.lifecycles, required, drain_s=settings.grace_period_s,
                                      discover=self._platform_models if settings.model_control_mode == "none" else None,
                                      on_change=self._follow_models)
        self._polling: asyncio.Task[None] | None = None
        options = [("grpc.max_receive_message_length", settings.max_message_bytes),
                   ("grpc.max_send_message_length", settings.max_message_bytes),
                   # Clients reconnect now and then, so new replicas behind a headless Service get traffic.
                   ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
                   ("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000))]
        auth = BearerToken(settings.auth_token.get_secret_value()) if settings.auth_token is not None else None
        budget = self.runtime.inflight_bytes
        self.closing = Closing()  # the stop as the calls see it (`stop`)
        self.grpc: aio.Server | SyncTransport
        wrapper: HandlerWrapper | SyncHandlerWrapper
        if settings.transport == "sync":  # calls on a thread pool (infersuite/services/runtime/sync_transport.py)
            self.grpc = SyncTransport(options, settings.transport_threads, settings.max_concurrent_rpcs,
                                      self.metrics.refused_calls, settings.call_limit_pushback is not False)
            wrapper = SyncHandlerWrapper(asyncio.get_running_loop(), self.metrics, auth, budget, self.closing)
        else:
            # Past max_concurrent_rpcs: grpc.aio's Cython layer refuses before any handler runs (the default); or,
            # with pushback, our limit first thing in each handler (infersuite/services/runtime/call_limit.py).
            ours = settings.max_concurrent_rpcs and settings.call_limit_pushback is True
            self.grpc = aio.server(options=options,
                                   maximum_concurrent_rpcs=None if ours else settings.max_concurrent_rpcs or None)
            limit = AioCallLimit(settings.max_concurrent_rpcs, self.metrics.refused_calls) if ours else None
            wrapper = HandlerWrapper(self.metrics, auth, budget, self.closing, limit)
        # Servicers register through this: every handler is wrapped once (errors, metrics, auth).
        self.registrar = RegisteringServer(self.grpc, wrapper)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.registrar)
        self.metrics_port: int | None = None
        self._loading: asyncio.Task[None] | None = None
        self.load_error: BaseException | None = None
        self.serving = False  # the overall health entry is SERVING (OIP ServerReady answers the same)
        self._health_follows = False  # after start-up (one process) until stop: each transaction sets health
        self._not_serving: dict[str, str] = {}  # service -> why its entries are NOT_SERVING (logged on change)
        # When set, called with the ready health entries instead of turning them SERVING (a worker).
        self.on_ready: Callable[[list[str]], Awaitable[None]] | None = None

    def _register(self) -> None:
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            OipServicer(self.models, self.settings.max_message_bytes, self.metrics,
                        self.settings.stream_max_inflight, lambda: self.serving, self._model_control(),
                        self.runtime.inflight_bytes),
            self.registrar)
        names = [reflection.SERVICE_NAME, health.SERVICE_NAME, OIP_SERVICE_NAME]
        for service in self.services:
            service.register(self.registrar, self.runtime)
            # A service that derives nothing still has its set swapped whole and health following it.
            self.runtime.lifecycles.setdefault(service.name, ServiceModels.without_state(service.name))
            names.extend(service.grpc_service_names)
        # The asyncio servicer, under v1 and v1alpha (infersuite/services/runtime/reflection.py).
        add_reflection(names, self.registrar)
        # Last: answers (and counts) the methods no handler above knows, which gRPC would refuse unseen.
        self.grpc.add_generic_rpc_handlers((_UnknownMethods(self.metrics, self.settings.transport == "sync"),))

    def _model_control(self) -> ModelControl:
        return ModelControl(self.models, self.reloader, self._follow_models,
                            self.settings.model_control_mode == "explicit", self.settings.grace_period_s)

    def _why_not_serving(self, service: ServiceModule) -> str | None:
        """None when the service's set serves and every model it needs now is loaded; else the reason.
        Asked after every transaction: a service's list can depend on the repository (segmentation's stages)."""
        lifecycle = self.runtime.lifecycles.get(service.name)
        try:
            required = [self.models.canonical(n) for n in service.required_models(self.models.repository)]
        except Exception as exc:
            return f"its list of models cannot be read: {exc}"
        if missing := [name for name in required if not self.models.is_ready(name)]:
            failure = self.models.load_failures.get(missing[0])
            return f"model {missing[0]} is not loaded" + (f" ({failure.reason})" if failure else "")
        if lifecycle is None or not lifecycle.loaded:
            return "its model set was never served"
        return None

    async def _follow_models(self) -> None:
        """Health from the models served now, after every model-set transaction and explicit unload (one
        process, after start-up, until stop): a service's entries, and the overall one (every service
        serving and every model asked for loaded); each change of a service's state is logged with why."""
        if not self._health_follows:
            return
        everything = self.models.all_ready
        for service in self.services:
            reason = self._why_not_serving(service)
            if reason != self._not_serving.get(service.name):
                if reason is None:
                    log.info("service %s is SERVING again", service.name)
                else:
                    log.warning("service %s is NOT_SERVING: %s", service.name, reason)
            if reason is None:
                self._not_serving.pop(service.name, None)
            else:
                self._not_serving[service.name] = reason
            everything = everything and reason is None
            for name in service.grpc_service_names:
                await self.health.set(name, NOT_SERVING if reason else SERVING)
        self.serving = everything  # OIP ServerReady answers the same
        await self.health.set("", SERVING if everything else NOT_SERVING)

    async def _set_health(self, status: int) -> None:
        self.serving = status == SERVING
        await self.health.set("", status)
        for service in self.services:
            for name in service.grpc_service_names:
                await self.health.set(name, status)

    async def start(self, load_first: bool = False) -> None:
        """Starts serving at once (health NOT_SERVING) and loads models in the background; `load_first`
        (a restarted worker, infersuite/services/runtime/worker_pool.py): loads first and listens only then, so the
        kernel hands it no connection of a port the others serve while it could only answer NOT_SERVING."""
        await self._set_health(NOT_SERVING)
        if load_first:
            self._loading = asyncio.create_task(self._load_models())
            await asyncio.shield(self._loading)
        await self.grpc.start()
        if self.settings.metrics_port >= 0:
            self.metrics_port = self.metrics.start_http(self.settings.metrics_host, self.settings.metrics_port)
        if not load_first:
            self._loading = asyncio.create_task(self._load_models())

    async def _load(self, what: str, load: Callable[[], Awaitable[T]]) -> T:
        """Runs a load; retries while the backend is unavailable (e.g. Triton starting)."""
        while True:
            try:
                return await load()
            except Unavailable as exc:
                log.warning("%s waits for its models: %s", what, exc.message)
                await asyncio.sleep(self.settings.load_retry_s)

    async def _load_service(self, service: ServiceModule) -> None:
        """The service's first model set, through the same transaction as a reload: a model that does not
        load or a set its `derive` refuses leaves the service without a set (its models not served)."""
        # Asked for from now on: aliases known, "not loaded yet" meanwhile, metric series at 0.
        self.models.expect(service.required_models(self.models.repository))
        outcomes = await self._load(f"service {service.name}", functools.partial(
            self.reloader.reload_set, service.name, wait_for_backend=True))
        if failed := [o for o in outcomes if o.state == "failed"]:
            raise SetNotServed.of(service.name, failed)

    def _platform_models(self) -> list[str]:
        """The models served besides the services' own: every model in the repository (model control
        none, Triton's default), or the start-up list of explicit control (`load_models`, "*" = all)."""
        repository = self.models.repository
        wanted = self.settings.load_models
        if self.settings.model_control_mode == "none" or "*" in wanted:
            return repository.names()
        return [repository.canonical(name) for name in wanted]

    async def _load_platform_models(self) -> None:
        """Each model alone: one that fails is reported (log, counter, RepositoryIndex) and the rest still
        load; the server is ready only once every model it was asked to serve is (Triton's strict readiness).
        A model of a service's set is loaded with that set only, never alone (not when the set was refused)."""
        claimed = self.reloader.claimed()
        for name in self._platform_models():
            if self.models.is_ready(name) or name in claimed:
                continue
            try:
                await self._load(f"model {name}", functools.partial(self.models.load, [name]))
            except Exception as exc:
                self.load_error = self.load_error or exc
                log.error("model %s could not be loaded: %s", name, exc)

    async def set_serving(self, names: Sequence[str]) -> None:
        """Health SERVING for these entries ("" = the whole server)."""
        for name in names:
            await self.health.set(name, SERVING)
        self.serving = self.serving or "" in names

    async def hold(self) -> None:
        """Health NOT_SERVING for every entry while requests are still answered (a worker of a server
        that has fewer serving workers than INFERSUITE_MIN_WORKERS)."""
        await self._set_health(NOT_SERVING)

    async def _load_models(self) -> None:
        ready: list[str] = []  # health entries whose models are loaded
        for service in self.services:
            try:
                await self._load_service(service)
            except InferSuiteError as exc:  # ours (a model not in the repository, a bad file): the message says it
                self.load_error = exc
                log.error("service %s could not load its models: %s", service.name, exc.message)
                continue
            except Exception as exc:
                self.load_error = exc
                log.exception("service %s could not load its models", service.name)
                continue
            ready.extend(service.grpc_service_names)
            if self.on_ready is None:
                await self.set_serving(service.grpc_service_names)
        await self._load_platform_models()
        if self.load_error is None:
            ready.append("")
            log.info("all models loaded")
        # One of several worker processes reports to its parent, which turns every worker SERVING
        # together (infersuite/services/runtime/worker_pool.py); a single process serves at once.
        if self.on_ready is not None:
            await self.on_ready(ready)
        else:  # health follows every transaction from now on
            self._health_follows = True
            await self._follow_models()
        if self.settings.repository_poll_s > 0:
            self._polling = asyncio.create_task(self.reloader.run(self.settings.repository_poll_s))

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits for model loading; raises the load error if a model failed."""
        if self._loading is None:
            raise RuntimeError("server not started")
        await asyncio.wait_for(asyncio.shield(self._loading), timeout)
        if self.load_error is not None:
            raise self.load_error

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first; after the drain, new calls refused until they stop coming; then the in-flight
        requests get `grace` seconds; then each service's model set is finalized and the models closed."""
        self._health_follows = False
        await self._set_health(NOT_SERVING)
        if self.settings.shutdown_drain_s > 0:
            await asyncio.sleep(self.settings.shutdown_drain_s)  # still serving: balancers see NOT_SERVING first
        for task in (self._loading, self._polling):
            if task is not None and not task.done():
                task.cancel()
        await self._refuse_new_calls(self.settings.shutdown_refuse_s)
        await self.grpc.stop(self.settings.grace_period_s if grace is None else grace)
        for lifecycle in self.runtime.lifecycles.values():
            await lifecycle.close(0.0)  # the requests are over (answered, or cut when the grace period ended)
        await self.models.close()
        self.runtime.executor.shutdown()
        self.metrics.stop_http()

    async def _refuse_new_calls(self, longest_s: float) -> None:
        """Every new call answered UNAVAILABLE by the handlers (Closing) until none has come for
        REFUSE_QUIET_S, at most `longest_s`: what the transport received before is answered, not cancelled."""
        if longest_s <= 0:
            return
        closing = self.closing
        closing.refusing = True
        start = closing.last_refusal = time.monotonic()
        while (now := time.monotonic()) - closing.last_refusal < REFUSE_QUIET_S and now - start < longest_s:
            await asyncio.sleep(REFUSE_POLL_S)
        if closing.refused:
            log.info("stopping: %d new call(s) refused UNAVAILABLE in %.2f s", closing.refused, now - start)

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


class GoneClientFilter(logging.Filter):
    """grpc.aio logs a traceback at ERROR ("ExecuteBatchError raised in core by servicer method") when a
    handler's status cannot be sent because its client already left: cancelled, past its deadline, or
    disconnected, as happens by the thousand under overload. Nothing failed on the server: one WARNING
    line naming the method instead. Likewise a handler cancelled when the grace period of a stop ends (an open
    health Watch stream always is): grpc.aio logs its CancelledError at ERROR; one INFO line instead."""

    PREFIX = "ExecuteBatchError raised in core by servicer method"
    UNHANDLED = "Exception not handled by _handle_exceptions in servicer method"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if str(record.msg).startswith(self.PREFIX):
            method = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "could not answer %s: its client had already gone", (method,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        elif (str(record.msg).startswith(self.UNHANDLED) and record.exc_info is not None
              and isinstance(record.exc_info[1], asyncio.CancelledError)):
            method = record.getMessage().removeprefix(self.UNHANDLED).strip(" []") or "?"
            record.msg = "call %s cancelled (the server's grace period ended, or its client left)"
            record.args = (method,)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_gone_clients() -> None:
    logger = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, GoneClientFilter) for f in logger.filters):
        logger.addFilter(GoneClientFilter())


async def build_server(
    settings: RuntimeSettings, services: list[ServiceModule] | None = None
) -> tuple[InferSuiteServer, int]:
    """Builds (does not start) the server and binds its port; port 0 picks a free one."""
    _quiet_gone_clients()
    server = InferSuiteServer(settings, services if services is not None else load_services(settings.services))
    server._register()
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    port = (server.grpc.add_secure_port(address, credentials) if credentials is not None
            else server.grpc.add_insecure_port(address))
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    return server, port
