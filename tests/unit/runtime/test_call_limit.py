"""The synchronous transport's call limit (infersuite/services/runtime/call_limit.py) without sockets: a
place is taken only by the submit that follows an admitting lookup on the same thread, held until the
call's future is done, and refused calls get the refusal handler that runs inline."""

from __future__ import annotations

import threading
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter

from infersuite.services.runtime.call_limit import CallLimit, LimitedPool


class _Details:
    method = "/inference.GRPCInferenceService/ModelInfer"
    invocation_metadata: tuple[Any, ...] = ()


def _limit(places: int) -> CallLimit:
    return CallLimit(places, Counter("refused", "refused", ["reason"], registry=CollectorRegistry()))


def _unary(request: Any, context: Any) -> bytes:
    return b""


def test_a_place_is_held_from_submit_until_the_call_is_done() -> None:
    limit = _limit(1)
    pool = LimitedPool(2, limit)
    handler = grpc.unary_unary_rpc_method_handler(_unary)
    release = threading.Event()
    try:
        assert limit.intercept_service(lambda d: handler, _Details()) is handler
        running = pool.submit(release.wait, 5)
        assert limit.active == 1
        refusal = limit.intercept_service(lambda d: handler, _Details())
        assert refusal is not None and refusal is not handler and refusal.request_streaming  # reads nothing
        inline = refusal.stream_unary.experimental_thread_pool.submit(lambda: threading.get_ident())
        assert inline.result(0) == threading.get_ident()  # the refusal runs on the calling thread
        release.set()
        running.result(5)
        assert limit.active == 0
        assert limit.intercept_service(lambda d: handler, _Details()) is handler  # a place is free again
    finally:
        release.set()
        pool.shutdown()


def test_only_the_submit_after_an_admitting_lookup_on_its_thread_takes_a_place() -> None:
    limit = _limit(4)
    pool = LimitedPool(2, limit)
    try:
        pool.submit(int).result(5)  # no lookup before it: not a call
        assert limit.taken() == (False, False)
        limit.intercept_service(lambda d: grpc.unary_unary_rpc_method_handler(_unary), _Details())
        other = threading.Thread(target=lambda: pool.submit(int).result(5))  # not the lookup's thread
        other.start()
        other.join()
        assert limit.active == 0
        assert limit.taken() == (True, True)  # still there for the lookup's own thread, once
        assert limit.taken() == (False, False)
        limit.release(0.0, False)
        assert limit.active == 0
    finally:
        pool.shutdown()
