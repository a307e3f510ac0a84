"""Explicit model control: the OIP RepositoryModelLoad / RepositoryModelUnload RPCs, as Triton's
`--model-control-mode=explicit`.

Off by default (`INFERSUITE_MODEL_CONTROL_MODE=none`: both RPCs answer FAILED_PRECONDITION), since
any caller allowed to reach the server could otherwise unload the models it serves; turn it on
together with `INFERSUITE_AUTH_TOKEN` or a network policy. With it on:
- load of a model not served loads its latest version; load of a served model loads the latest
  version beside it and swaps it in only if it loads (services/runtime/reload.py), as Triton's
  reload does. A failed load is reported like any other (log, load-failure counter, RepositoryIndex).
- unload stops serving the model: new requests get UNAVAILABLE, queued ones get the grace period.
- health follows: a service whose models are not all loaded reports NOT_SERVING, and SERVING again
  once they are.
With INFERSUITE_WORKERS > 1 a call reaches one worker and changes that worker only: use explicit
control with one worker per process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.runtime.model_manager import ModelManager
from services.runtime.reload import ModelReloader

log = logging.getLogger(__name__)

# (service names on the health endpoint, the models they need now) per hosted service, asked at every call.
ServiceNeeds = Callable[[], Sequence[tuple[Sequence[str], Sequence[str]]]]


class ModelControl:
    def __init__(self, models: ModelManager, reloader: ModelReloader, services: ServiceNeeds,
                 set_health: Callable[[str, bool], Awaitable[None]], enabled: bool, drain_s: float):
        self._models, self._reloader, self._services = models, reloader, services
        self._set_health, self._enabled, self._drain_s = set_health, enabled, drain_s

    def _check(self, name: str, parameters: Sequence[str], accepted: frozenset[str] = frozenset()) -> str:
        if not self._enabled:
            raise FailedPrecondition("explicit model control is off on this server "
                                     "(INFERSUITE_MODEL_CONTROL_MODE=explicit turns it on)")
        if unknown := sorted(set(parameters) - accepted):
            raise InvalidArgument(f"load/unload parameters are not supported (got {', '.join(unknown)})")
        if not name:
            raise InvalidArgument("model_name is empty")
        canonical = self._models.repository.canonical(name)
        if canonical not in self._models.repository.names():
            raise NotFound(f"model {name!r} is not in the model repository")
        return canonical

    async def load(self, name: str, parameters: Sequence[str] = ()) -> None:
        name = self._check(name, parameters)
        # The model's whole service set is (re)loaded and swapped together, so the service derives its
        # state from the versions that serve (services/runtime/lifecycle.py).
        failed = [o for o in await self._reloader.load(name) if o.state == "failed"]
        if failed:
            stays = "the serving version stays" if self._models.is_ready(name) else "it is not served"
            raise Unavailable(f"model {name!r} version {failed[0].version} failed to load; {stays} "
                              "(RepositoryIndex shows the reason)")
        await self._update_health()

    async def unload(self, name: str, parameters: Sequence[str] = ()) -> None:
        # tritonclient's unload_model() always sends unload_dependents (Triton's ensembles); no model here
        # depends on another through the server, so either value unloads exactly this model.
        name = self._check(name, parameters, frozenset({"unload_dependents"}))
        if self._models.is_ready(name):
            await self._models.unload(name, self._drain_s)
        await self._update_health()

    async def _update_health(self) -> None:
        everything = True
        for grpc_names, required in self._services():
            serving = all(self._models.is_ready(self._models.repository.canonical(m)) for m in required)
            everything = everything and serving
            for grpc_name in grpc_names:
                await self._set_health(grpc_name, serving)
        await self._set_health("", everything)
        log.info("model control: loaded %s", ", ".join(sorted(self._models.loaded())) or "none")
