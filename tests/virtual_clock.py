"""A fake clock for scheduling tests: an event loop whose time moves only when nothing is ready.

Timers fire in their order at once, so a test can assert what a scheduler waited, in exact
virtual seconds, however loaded the machine is: a request answered without a timer firing took
0.0 s, one that waited for a 0.5 s queue delay took 0.5 s. `patch_monotonic` points a module's
`time.monotonic()` at the same clock, for code that reads time itself.

Only for code that runs on the loop: a thread (run_in_executor, to_thread) would see virtual time
jump past it while it works, so such code is not timed with this clock.
"""

from __future__ import annotations

import asyncio
import selectors
import types
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; a wait for the next timer moves the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer pending: only real I/O can wake the loop
            return super().select(None)
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to completion on a fresh VirtualClockLoop (virtual time starts at 0.0)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def patch_monotonic(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType) -> None:
    """`module.time.monotonic()` reads the running loop's clock (the virtual one inside run_virtual)."""
    fake = types.SimpleNamespace(**{name: getattr(module.time, name) for name in dir(module.time)
                                    if not name.startswith("_")})
    fake.monotonic = lambda: asyncio.get_running_loop().time()
    monkeypatch.setattr(module, "time", fake)
