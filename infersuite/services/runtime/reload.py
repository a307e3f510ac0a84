"""The model-set transaction: a service's models are loaded BESIDE the serving ones and the whole
set is swapped in only once every model has loaded and warmed up and the service accepted it (its
`derive` ran on the new set); anything that fails keeps the previous set serving, or, at start-up,
leaves the service without a set (NOT_SERVING, its models not served). Start-up, repository polling
and explicit control (infersuite/services/runtime/control.py) all go through `reload_set`, and health is
recomputed after each (`on_change`).

Like Triton's repository polling (`--model-control-mode=poll`): the reloader compares each
service's models with the latest numeric version directories of the repository (`poll_once`, or
`run` every `repository_poll_s`), or is asked for one model (`reload`). The reload unit is the
service's model set (segmentation's stage graphs, splitcompute's server graphs): never one graph
of a multi-graph family alone, so no request mixes versions. A version that does not load, fails
its warm-up, takes other tensors or lacks meta.json entries of the serving version, or a set the
service refuses (its lifecycle `derive` raises on the new meta.json values), is a failed load,
reported three ways: the log (ERROR), the counter `infersuite_model_load_failures_total{model}`,
and the OIP RepositoryIndex entry of that version (state UNAVAILABLE, with the reason). The same
broken files are not retried on every poll; a version directory with a changed file (newer
mtime) is. A swap lists the meta.json entries whose VALUES changed (the service re-derived them).

The swap is atomic for callers: requests that started on the old set finish on it (it is retired
once they are done, or after `drain_s`, then finalized), new ones get the new set at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infersuite.services.runtime.backends.base import LoadedModel
from infersuite.services.runtime.errors import InferSuiteError, NotFound, RepositoryError, Unavailable
from infersuite.services.runtime.lifecycle import ServiceModels, Snapshot
from infersuite.services.runtime.model_manager import ModelManager, ModelSet, ServedModel
from infersuite.services.runtime.repository import RepositoryModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    model: str
    version: str  # the version that was tried
    state: str  # "swapped", "unchanged" or "failed"
    reason: str = ""
    meta_changed: tuple[str, ...] = ()  # meta.json entries whose values differ from the replaced version's


class SignatureChanged(InferSuiteError):
    """The new version's tensors or meta.json keys differ from the serving one's (its callers would break).
    Its message names tensors and meta.json keys only, so RepositoryIndex may show it."""


class SetRefused(InferSuiteError):
    """The service's lifecycle refused the new model set (its `derive` raised on the new meta.json
    values); the message is the service's own, safe for RepositoryIndex."""


class SetNotServed(InferSuiteError):
    """A service's model set could not be served at start-up; the message names each model and why."""

    @classmethod
    def of(cls, group: str, failed: list[ReloadOutcome]) -> SetNotServed:
        return cls(f"the {group} model set is not served: " + "; ".join(f"{o.model}: {o.reason}" for o in failed))


def _signature(model: LoadedModel) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.name, s.datatype, s.shape) for s in [*model.inputs, *model.outputs]]


def meta_changes(new: Mapping[str, Any], serving: Mapping[str, Any]) -> tuple[str, ...]:
    """meta.json entries whose values differ (added ones included)."""
    return tuple(sorted(key for key in new if key not in serving or new[key] != serving[key]))


def check_signature(new: LoadedModel, serving: LoadedModel) -> None:
    """A version that loads and warms up but takes other tensors, or lacks meta.json entries the
    serving one has (services read them: vocabulary, codec tables...), is a failed load too."""
    if _signature(new) != _signature(serving):
        raise SignatureChanged(f"inputs/outputs {_signature(new)} differ from the serving version's "
                               f"{_signature(serving)}")
    if missing := sorted(set(serving.meta) - set(new.meta) - {"schema_version"}):  # absent = version 1
        raise SignatureChanged(f"meta.json lacks {', '.join(missing)} (the serving version has them)")


class _SetFailed(Exception):
    def __init__(self, culprits: list[RepositoryModel], cause: Exception):
        super().__init__(str(cause))
        self.culprits, self.cause = culprits, cause


@dataclass
class _Swap:
    outcomes: list[ReloadOutcome]
    replaced: list[ServedModel]
    old_snapshot: Snapshot[Any] | None
    lifecycle: ServiceModels[Any] | None


class ModelReloader:
    def __init__(self, models: ModelManager, lifecycles: Mapping[str, ServiceModels[Any]],
                 required: Mapping[str, Callable[[], list[str]]], drain_s: float = 10.0,
                 discover: Callable[[], list[str]] | None = None,
                 on_change: Callable[[], Awaitable[None]] | None = None):
        """`required`: service -> its model names now; `lifecycles`: service -> its ServiceModels
        (the runtime's registry, filled as services register); `discover`: the models to serve besides
        the services' (model control none: every model in the repository, so polling loads new ones);
        `on_change`: awaited after every transaction that tried something (the server's health follows)."""
        self._models = models
        self._lifecycles = lifecycles
        self._required = required
        self._drain_s = drain_s
        self._discover = discover
        self._on_change = on_change
        self._failed: dict[str, frozenset[tuple[str, str, float]]] = {}  # set -> the versions that failed
        self._lock = asyncio.Lock()  # one reload at a time: two swaps of one set must not interleave

    def _mtime(self, *parts: str) -> float:
        """The newest file under a model's (or a version's) directory: any rewritten file makes it worth a retry."""
        directory = self._models.repository.root.joinpath(*parts)
        return max((f.stat().st_mtime for f in directory.rglob("*") if f.is_file()), default=0.0)

    def _canonical(self, name: str) -> str:
        """The model an alias names: as the manager resolved it when it served it, else as aliases.json says."""
        resolved = self._models.canonical(name)
        return resolved if resolved != name else self._models.repository.canonical(name)

    def _set_names(self, service: str) -> list[str]:
        return [self._canonical(n) for n in self._required[service]()]

    def _groups(self) -> dict[str, list[str]]:
        """Reload units: every service's model set, and each loaded model no service claims. A service
        whose list cannot be read now (a broken meta.json it reads) has an empty set here: it is not
        polled until the list reads again, and never stops the other sets' transactions."""
        groups: dict[str, list[str]] = {}
        for service in self._required:
            try:
                groups[service] = self._set_names(service)
            except Exception as exc:
                log.warning("the %s model set's list cannot be read: %s", service, exc)
                groups[service] = []
        claimed = {name for names in groups.values() for name in names}
        groups.update({name: [name] for name in self._models.loaded() if name not in claimed})
        if self._discover is not None:
            groups.update({name: [name] for name in self._discover() if name not in claimed})
        return groups

    def claimed(self) -> set[str]:
        """The models some service's set holds (loaded with that set, never alone)."""
        groups = self._groups()
        return {name for service in self._required for name in groups[service]}

    def _plan(self, names: list[str], pinned: Mapping[str, str]) -> list[RepositoryModel]:
        """The versions to load: the pinned or latest one of each model, where it is newer than the
        served one (or it is not served at all)."""
        loaded, plan = self._models.loaded(), []
        for name in names:
            entry = self._models.repository.resolve(name, pinned.get(name, ""))
            serving = loaded.get(name)
            if serving is None or (entry.version != serving.version and
                                   (name in pinned or int(entry.version) > int(serving.version))):
                plan.append(entry)
        return plan

    def _plan_key(self, plan: list[RepositoryModel]) -> frozenset[tuple[str, str, float]]:
        return frozenset((e.name, e.version, self._mtime(e.name, e.version)) for e in plan)

    async def _load(self, plan: list[RepositoryModel]) -> dict[str, ServedModel]:
        """Loads and warms up every planned version beside the serving ones; all or none."""
        loaded = self._models.loaded()
        prepared: dict[str, ServedModel] = {}
        try:
            for entry in plan:
                try:
                    version = await self._models.prepare(entry)
                except Exception as exc:
                    raise _SetFailed([entry], exc) from None
                prepared[entry.name] = self._models.schedule(version)
                if entry.name in loaded:
                    try:
                        check_signature(version.model, loaded[entry.name])
                    except SignatureChanged as exc:
                        raise _SetFailed([entry], exc) from None
        except BaseException:
            await asyncio.gather(*(served.retire(0.0) for served in prepared.values()))
            raise
        return prepared

    async def _swap(self, group: str, names: list[str], plan: list[RepositoryModel]) -> _Swap:
        """Loads the plan, lets the service derive its state from the new set, publishes both."""
        before = self._models.loaded()
        prepared = await self._load(plan)
        served = {name: prepared.get(name) or self._models.served(name) for name in names}
        lifecycle = self._lifecycles.get(group)
        try:
            snapshot = lifecycle.prepare(ModelSet(self._models, served)) if lifecycle is not None else None
        except Exception as exc:  # the service refused the new meta.json values
            await asyncio.gather(*(s.retire(0.0) for s in prepared.values()))
            raise _SetFailed(plan, SetRefused(f"the {group} service refused the new model set: {exc}")) from None
        replaced = self._models.publish(prepared.values())  # these two lines run without an await between:
        old = lifecycle.publish(snapshot) if lifecycle is not None and snapshot is not None else None
        outcomes = [ReloadOutcome(e.name, e.version, "swapped", meta_changed=meta_changes(
            prepared[e.name].model.meta, before[e.name].meta) if e.name in before else ()) for e in plan]
        for outcome in outcomes:
            log.info("model %s v%s swapped in as part of %s; meta.json values changed: %s", outcome.model,
                     outcome.version, group, ", ".join(outcome.meta_changed) or "none")
        return _Swap(outcomes, replaced, old, lifecycle)

    async def reload_set(self, group: str, pinned: Mapping[str, str] | None = None, *,
                         wait_for_backend: bool = False) -> list[ReloadOutcome]:
        """The transaction: loads the newer (or `pinned`) versions of one set beside the serving ones,
        and any model of the set not served (first load, or unloaded by explicit control); the service
        derives its state from the whole new set, and both are published together, or nothing is.
        `wait_for_backend` (start-up): a backend not up yet raises Unavailable instead of failing the set."""
        outcomes = await self._transaction(group, pinned or {}, wait_for_backend)
        if outcomes is not None and self._on_change is not None:
            await self._on_change()
        return outcomes or []

    async def _transaction(self, group: str, pinned: Mapping[str, str],
                           wait_for_backend: bool) -> list[ReloadOutcome] | None:
        """reload_set's work; None when there was nothing to do."""
        async with self._lock:
            # A model of no service's set is its own set; a service's list that cannot be read raises here.
            names = self._set_names(group) if group in self._required else [group]
            try:
                plan = self._plan(names, pinned)
            except (RepositoryError, NotFound) as exc:  # a file that does not parse or a model that is not
                # there: a failed load, named in RepositoryIndex (once per change of the files)
                return self._unreadable(group, names, exc) or None
            lifecycle = self._lifecycles.get(group)
            if not plan and (lifecycle is None or lifecycle.loaded):  # a service's first set publishes even
                return None                                            # when its models already serve
            try:
                swap = await self._swap(group, names, plan)
            except _SetFailed as failed:
                if wait_for_backend and isinstance(failed.cause, Unavailable):
                    raise failed.cause from None  # the caller retries (Triton starting): not a broken set
                self._failed[group] = self._plan_key(plan)
                return self._failed_outcomes(plan, failed)
            self._failed.pop(group, None)
        await self._retire(swap)
        return swap.outcomes

    def _unreadable(self, group: str, names: list[str], exc: InferSuiteError) -> list[ReloadOutcome]:
        """A repository file of the set does not parse: reported once per change of the files (not every poll)."""
        culprit = next((n for n in names if n in exc.message), names[0])
        versions = self._models.repository.versions(culprit)
        version = versions[-1] if versions else ""
        key = frozenset({(culprit, version, self._mtime(culprit))})  # config.pbtxt, meta.json: any file of it
        if self._failed.get(group) == key:
            return []
        self._failed[group] = key
        reason = self._models.record_failure(culprit, version, exc).reason
        return [ReloadOutcome(culprit, version, "failed", reason)]

    def _failed_outcomes(self, plan: list[RepositoryModel], failed: _SetFailed) -> list[ReloadOutcome]:
        outcomes = []
        for entry in plan:
            if entry in failed.culprits:
                reason = self._models.record_failure(entry.name, entry.version, failed.cause).reason
            else:
                reason = f"not swapped: {', '.join(f'{c.name} v{c.version}' for c in failed.culprits)} " \
                         "of the same model set failed"
            outcomes.append(ReloadOutcome(entry.name, entry.version, "failed", reason))
        return outcomes

    async def _retire(self, swap: _Swap) -> None:
        """Finalize: the old snapshot's requests finish on it, the service finalizes its state, then
        the replaced models close."""
        loop = asyncio.get_running_loop()
        limit = loop.time() + self._drain_s
        if (swap.old_snapshot is not None and swap.lifecycle is not None
                and not await swap.lifecycle.retire(swap.old_snapshot, self._drain_s)):
            log.warning("requests on the replaced model set still ran after %.1f s; they fail UNAVAILABLE",
                        self._drain_s)
        for served in swap.replaced:
            await served.retire(max(limit - loop.time(), 0.0))

    async def reload(self, name: str, version: str = "") -> ReloadOutcome:
        """Loads `version` (default: the latest) of a served model, with the rest of its set."""
        canonical = self._models.get(name).name
        group = next(g for g, names in self._groups().items() if canonical in names)
        outcomes = await self.reload_set(group, {canonical: version} if version else None)
        mine = [o for o in outcomes if o.model == canonical]
        return mine[0] if mine else ReloadOutcome(canonical, self._models.get(canonical).version, "unchanged")

    async def load(self, name: str) -> list[ReloadOutcome]:
        """Explicit control (OIP RepositoryModelLoad): serves `name`, with the rest of its service's
        set, at the latest versions; a served, up-to-date model is left as it is."""
        canonical = self._models.repository.canonical(name)
        group = next((g for g, names in self._groups().items() if canonical in names), canonical)
        return await self.reload_set(group)

    def _needs_reload(self, group: str, names: list[str]) -> bool:
        try:
            plan = self._plan(names, {})
        except (RepositoryError, NotFound):
            return True  # reload_set reports it, once per change of the files
        return bool(plan) and self._failed.get(group) != self._plan_key(plan)

    async def poll_once(self) -> list[ReloadOutcome]:
        """One pass over every model set; returns what was tried."""
        outcomes = []
        for group, names in self._groups().items():
            if self._needs_reload(group, names):
                outcomes.extend(await self.reload_set(group))
        return outcomes

    async def run(self, interval_s: float) -> None:
        """Polls forever (a task the server starts when repository_poll_s > 0)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_once()
            except Exception:  # a repository being rewritten under us: try again next round
                log.exception("repository poll failed")
