"""Hot reload: a newer model version is loaded BESIDE the serving one and swapped in only once it
has loaded and warmed up; a version that fails keeps the previous one serving.

Like Triton's repository polling (`--model-control-mode=poll`): the reloader compares each served
model with the latest numeric version directory of the repository (`poll_once`, or `run` every
`repository_poll_s`), or is asked for one model (`reload`). A version that does not load, fails its
warm-up, takes other tensors or lacks meta.json entries of the serving version is a failed load,
reported three ways:
the log (ERROR), the counter `infersuite_model_load_failures_total{model}`, and the OIP
RepositoryIndex entry of that version (state UNAVAILABLE, with the reason). The same broken file
is not retried on every poll; a version directory with a changed file (newer mtime) is.

The swap is atomic for callers: requests already queued on the old version finish there (the old
scheduler drains for up to `drain_s`), new ones go to the new version at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.runtime.backends.base import LoadedModel
from services.runtime.models import ModelManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    model: str
    version: str  # the version that was tried
    state: str  # "swapped", "unchanged" or "failed"
    reason: str = ""


class SignatureChanged(ValueError):
    """The new version's tensors or meta.json keys differ from the serving one's (its callers would break)."""


def _signature(model: LoadedModel) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.name, s.datatype, s.shape) for s in [*model.inputs, *model.outputs]]


async def _check_signature(new: LoadedModel, serving: LoadedModel) -> None:
    """A version that loads and warms up but takes other tensors, or lacks meta.json entries the
    serving one has (services read them: vocabulary, codec tables...), is a failed load too."""
    problem = ""
    if _signature(new) != _signature(serving):
        problem = f"inputs/outputs {_signature(new)} differ from the serving version's {_signature(serving)}"
    elif missing := sorted(set(serving.meta) - set(new.meta)):
        problem = f"meta.json lacks {', '.join(missing)} (the serving version has them)"
    if problem:
        await new.close()
        raise SignatureChanged(problem)


class ModelReloader:
    def __init__(self, models: ModelManager, drain_s: float = 10.0):
        self._models = models
        self._drain_s = drain_s
        self._failed: dict[str, tuple[str, float]] = {}  # model -> (version, model file mtime) that failed
        self._lock = asyncio.Lock()  # one reload at a time: two swaps of one model must not interleave

    def _latest(self, name: str) -> str:
        versions = self._models.repository.versions(name)
        return versions[-1] if versions else ""

    def _mtime(self, name: str, version: str) -> float:
        """The newest file of a version directory: any rewritten file makes the version worth a retry."""
        directory = self._models.repository.root / name / version
        return max((f.stat().st_mtime for f in directory.iterdir()), default=0.0) if directory.is_dir() else 0.0

    async def reload(self, name: str, version: str = "") -> ReloadOutcome:
        """Loads `version` (default: the latest) of a served model beside the current one; swaps on success."""
        async with self._lock:
            current = self._models.get(name)
            entry = self._models.repository.resolve(current.name, version)
            if entry.version == current.version:
                return ReloadOutcome(current.name, entry.version, "unchanged")
            try:
                model, policy = await self._models.prepare(entry)
                await _check_signature(model, current)
            except Exception as exc:  # any load failure: the serving version stays, the failure is reported
                self._failed[current.name] = (entry.version, self._mtime(current.name, entry.version))
                failure = self._models.record_failure(current.name, entry.version, exc)
                return ReloadOutcome(current.name, entry.version, "failed", failure.reason)
            self._failed.pop(current.name, None)
            old_model, old_scheduler = self._models.swap(model, policy)
        if not await old_scheduler.drain(self._drain_s):
            log.warning("model %s v%s did not drain within %.1f s; its queued requests fail UNAVAILABLE",
                        name, old_model.version, self._drain_s)
        await old_scheduler.close()
        await old_model.close()
        return ReloadOutcome(model.name, model.version, "swapped")

    def _needs_reload(self, name: str, serving: str) -> str:
        """The version to try, or "" when the served one is the latest or the latest already failed as is."""
        latest = self._latest(name)
        if not latest or int(latest) <= int(serving):
            return ""
        if self._failed.get(name) == (latest, self._mtime(name, latest)):
            return ""
        return latest

    async def poll_once(self) -> list[ReloadOutcome]:
        """One pass over every served model; returns what was tried."""
        outcomes = []
        for name, model in self._models.loaded().items():
            version = self._needs_reload(name, model.version)
            if version:
                outcomes.append(await self.reload(name, version))
        return outcomes

    async def run(self, interval_s: float) -> None:
        """Polls forever (a task the server starts when repository_poll_s > 0)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_once()
            except Exception:  # a repository being rewritten under us: try again next round
                log.exception("repository poll failed")
