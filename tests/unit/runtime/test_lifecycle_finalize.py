"""finalize, the third verb of the service lifecycle (no sockets): a retired snapshot's state reaches
the service's finalize only after its last request, the serving one at close, and a finalize that
raises is logged without undoing the swap."""

from __future__ import annotations

import asyncio
import logging

from infersuite.services.runtime.lifecycle import ServiceModels
from infersuite.services.runtime.model_manager import ModelSet


class _Empty(ModelSet):
    def __init__(self) -> None:  # no manager needed: the derive below reads nothing
        pass


def _counting() -> tuple[ServiceModels[int], list[int]]:
    derived = iter(range(1, 100))
    finalized: list[int] = []
    return ServiceModels("family", lambda models: next(derived), finalized.append), finalized


async def test_a_retired_state_is_finalized_after_its_last_request_and_the_serving_one_at_close() -> None:
    lifecycle, finalized = _counting()
    assert lifecycle.publish(lifecycle.prepare(_Empty())) is None
    with lifecycle.use() as held:  # a request on state 1
        old = lifecycle.publish(lifecycle.prepare(_Empty()))
        assert old is held and lifecycle.current.state == 2
        retiring = asyncio.create_task(lifecycle.retire(old, timeout_s=30))
        await asyncio.sleep(0.05)
        assert finalized == [] and not retiring.done()  # state 1 is still in use
    assert await retiring is True and finalized == [1]
    await lifecycle.close(0.0)
    assert finalized == [1, 2] and not lifecycle.loaded


async def test_a_finalize_that_raises_is_logged_and_a_default_finalize_does_nothing(caplog) -> None:
    def broken(state: int) -> None:
        raise RuntimeError("could not release")

    lifecycle = ServiceModels("family", lambda models: 1, broken)
    lifecycle.publish(lifecycle.prepare(_Empty()))
    with caplog.at_level(logging.ERROR, logger="infersuite.services.runtime.lifecycle"):
        await lifecycle.close(0.0)
    assert "the family service's finalize failed on model set 1" in caplog.text
    plain = ServiceModels.without_state("plain")
    plain.publish(plain.prepare(_Empty()))
    assert await plain.retire(plain.current, 0.0) is True
