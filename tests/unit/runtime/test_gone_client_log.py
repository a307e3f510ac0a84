"""grpc.aio's traceback for an answer whose client already left becomes one WARNING line; other records
of that logger pass unchanged."""

from __future__ import annotations

import logging

from infersuite.services.runtime.server import GoneClientFilter


def _record(msg: str, level: int, args: tuple, exc: bool | BaseException) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise exc if isinstance(exc, BaseException) else RuntimeError("execute_batch failed")
        except BaseException:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("grpc._cython.cygrpc", level, "server.pyx.pxi", 1, msg, args, exc_info)


def test_a_gone_client_traceback_becomes_one_warning_naming_the_method() -> None:
    record = _record("ExecuteBatchError raised in core by servicer method [%s]", logging.ERROR,
                     ("/infersuite.ctr.v1.CtrService/Score",), exc=True)
    assert GoneClientFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "could not answer /infersuite.ctr.v1.CtrService/Score: its client had already gone"


def test_other_errors_of_grpc_keep_their_level_and_traceback() -> None:
    record = _record("Unexpected error in handler %s", logging.ERROR, ("x",), exc=True)
    assert GoneClientFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_handler_cancelled_at_the_end_of_a_stop_is_one_info_line() -> None:
    import asyncio

    record = _record("Exception not handled by _handle_exceptions in servicer method [%s]", logging.ERROR,
                     ("/grpc.health.v1.Health/Watch",), exc=asyncio.CancelledError())
    assert GoneClientFilter().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage().startswith("call /grpc.health.v1.Health/Watch cancelled")
    other = _record("Exception not handled by _handle_exceptions in servicer method [%s]", logging.ERROR, ("x",),
                    exc=True)  # a real error keeps its level and traceback
    assert GoneClientFilter().filter(other)
    assert other.levelno == logging.ERROR and other.exc_info is not None
