"""The service lifecycle, like Triton's initialize / execute / finalize, over a service's model set.

A service hands the runtime a `derive` function (its codec tables, pipeline, vocabulary: whatever
it computes from its models' meta.json). The runtime calls it whenever the service's model set is
loaded or swapped, on the NEW set, before that set serves (initialize); a `derive` that raises
refuses the set, and the previous one keeps serving. A request holds one `Snapshot` (the model set
plus what was derived from it) from start to end (execute), so it never mixes versions or reads
derived state of another set; the replaced snapshot is retired once its last request has finished,
or after the drain period (finalize: the service's `finalize` gets the state its `derive` built, then
the replaced models are drained and closed). The current snapshot is finalized too when the server stops.

    with service_models.use() as snapshot:      # one consistent set for the whole request
        codec = snapshot.state.codecs[version]
        await snapshot.models.infer(name, inputs)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from infersuite.services.runtime.errors import Unavailable
from infersuite.services.runtime.model_manager import ModelSet

T = TypeVar("T")
log = logging.getLogger(__name__)


class Snapshot(Generic[T]):
    """A model set and the state a service derived from it; a context manager that counts the
    requests using it, so a reload retires it only once they are done."""

    def __init__(self, generation: int, models: ModelSet, state: T):
        self.generation, self.models, self.state = generation, models, state
        self.requests = 0
        self._retired = False
        self._idle: asyncio.Event | None = None

    def __enter__(self) -> Snapshot[T]:
        self.requests += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.requests -= 1
        if self.requests == 0 and self._idle is not None:
            self._idle.set()

    async def retire(self, timeout_s: float) -> bool:
        """Waits until no request uses this snapshot (new ones already get the next); True if idle in time."""
        self._retired = True
        if self.requests == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


def _no_state(models: ModelSet) -> None:
    return None


def _nothing_to_release(state: Any) -> None:
    return None


class ServiceModels(Generic[T]):
    """One service's current snapshot. `prepare` derives the state of a candidate set (and may
    refuse it by raising); `publish` makes a prepared snapshot the current one; `retire` finalizes a
    replaced one (`finalize(state)`: the service releases what `derive` built; default: nothing)."""

    def __init__(self, service: str, derive: Callable[[ModelSet], T],
                 finalize: Callable[[T], None] | None = None):
        self.service = service
        self._derive = derive
        self._finalize: Callable[[T], None] = finalize or _nothing_to_release
        self._current: Snapshot[T] | None = None
        self._generation = 0

    @classmethod
    def without_state(cls, service: str) -> ServiceModels[Any]:
        """For a service that derives nothing from its models (the set is still swapped whole)."""
        return ServiceModels(service, _no_state)

    @property
    def current(self) -> Snapshot[T]:
        if self._current is None:
            raise Unavailable(f"the {self.service} service's models are not loaded yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def use(self) -> Snapshot[T]:
        """The snapshot a request runs on: `with service_models.use() as snapshot: ...`."""
        return self.current

    def prepare(self, models: ModelSet) -> Snapshot[T]:
        """Derives the service's state from a candidate set; raises when the service refuses it."""
        return Snapshot(self._generation + 1, models, self._derive(models))

    def publish(self, snapshot: Snapshot[T]) -> Snapshot[T] | None:
        """Serves `snapshot` to new requests at once; returns the one it replaces (to retire)."""
        old, self._current = self._current, snapshot
        self._generation = snapshot.generation
        return old

    async def retire(self, snapshot: Snapshot[T], timeout_s: float) -> bool:
        """Finalize: waits until no request uses `snapshot` (or `timeout_s`), then hands its state to the
        service's `finalize`; True if it was idle in time. A `finalize` that raises is logged, never raised:
        the swap or the stop it belongs to has already happened."""
        idle = await snapshot.retire(timeout_s)
        try:
            self._finalize(snapshot.state)
        except Exception:
            log.exception("the %s service's finalize failed on model set %d", self.service, snapshot.generation)
        return idle

    async def close(self, timeout_s: float) -> None:
        """At stop: the current snapshot stops serving and is retired (finalized)."""
        current, self._current = self._current, None
        if current is not None:
            await self.retire(current, timeout_s)
