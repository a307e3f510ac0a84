"""How far behind the event loop runs: the backlog a model's queue cannot see.

Under overload the requests that wait are not only in a model's queue: once the serving core is
busy, received RPCs wait for the event loop before any handler runs, and refusing them costs CPU
too. A timer every `interval_s` notes how late it ran; `lag_s()` is the latest lateness, or how
overdue the next tick already is (a loop blocked right now). Admission refuses new work while the
lag is over its share of the queue-time bound (infersuite/services/runtime/batching.py), so the loop catches up
and accepted requests stay within the bound.
"""

from __future__ import annotations

import asyncio
import weakref


class LoopLag:
    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = 0.005) -> None:
        self._loop, self.interval_s = loop, interval_s
        self._late = 0.0
        self._due = loop.time() + interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self._late = now - self._due
        self._due = now + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def lag_s(self) -> float:
        return max(self._late, self._loop.time() - self._due, 0.0)

    def stop(self) -> None:
        self._handle.cancel()


_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()


def monitor(loop: asyncio.AbstractEventLoop) -> LoopLag:
    """The loop's one monitor, started on first use."""
    found = _monitors.get(loop)
    if found is None:
        found = _monitors[loop] = LoopLag(loop)
    return found
