"""Explicit model control: the OIP RepositoryModelLoad / RepositoryModelUnload RPCs, as Triton's
`--model-control-mode=explicit`.

Off by default (`INFERSUITE_MODEL_CONTROL_MODE=none`: both RPCs answer FAILED_PRECONDITION), since
any caller allowed to reach the server could otherwise unload the models it serves; turn it on
together with `INFERSUITE_AUTH_TOKEN` or a network policy. With it on:
- load of a model not served loads its latest version; load of a served model loads the latest
  version beside it and swaps it in only if it loads (infersuite/services/runtime/reload.py), as Triton's
  reload does. A failed load is reported like any other (log, load-failure counter, RepositoryIndex).
- unload stops serving the model: new requests get UNAVAILABLE, queued ones get the grace period.
- health follows (the server's `follow_models`, after every load and unload, as after start-up and
  each repository poll): a service whose models are not all loaded reports NOT_SERVING, and SERVING
  again once its set is loaded back and derived.
With INFERSUITE_WORKERS > 1 a call reaches one worker and changes that worker only: use explicit
control with one worker per process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from infersuite.services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.reload import ModelReloader

log = logging.getLogger(__name__)


class ModelControl:
    def __init__(self, models: ModelManager, reloader: ModelReloader, follow_models: Callable[[], Awaitable[None]],
                 enabled: bool, drain_s: float):
        """`follow_models`: sets health from the models served now (the reloader calls it after each load)."""
        self._models, self._reloader, self._follow_models = models, reloader, follow_models
        self._enabled, self._drain_s = enabled, drain_s

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
        # The model's whole service set goes through the model-set transaction (infersuite/services/runtime/reload.py):
        # (re)loaded, derived and swapped together; health follows it.
        failed = [o for o in await self._reloader.load(name) if o.state == "failed"]
        self._log_loaded()
        if failed:
            stays = "the serving version stays" if self._models.is_ready(name) else "it is not served"
            raise Unavailable(f"model {name!r} version {failed[0].version} failed to load; {stays} "
                              "(RepositoryIndex shows the reason)")

    async def unload(self, name: str, parameters: Sequence[str] = ()) -> None:
        # tritonclient's unload_model() always sends unload_dependents (Triton's ensembles); no model here
        # depends on another through the server, so either value unloads exactly this model.
        name = self._check(name, parameters, frozenset({"unload_dependents"}))
        if self._models.is_ready(name):
            await self._models.unload(name, self._drain_s)
        await self._follow_models()
        self._log_loaded()

    def _log_loaded(self) -> None:
        log.info("model control: loaded %s", ", ".join(sorted(self._models.loaded())) or "none")
