"""The one mapping of the error hierarchy (infersuite/services/runtime/errors.py) to a gRPC status, used by the
call wrapper (infersuite/services/runtime/handler_wrapper.py) and by each request of a stream
(infersuite/services/runtime/streaming.py)."""

from __future__ import annotations

import logging

import grpc

from infersuite.services.runtime.errors import InferSuiteError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"
# Status messages travel in a trailer the client caps at 16 KiB: a message quoting a huge client
# value (a 64 KiB model name) would make the client drop the whole status (tests/reliability).
MAX_MESSAGE_CHARS = 2048


def short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "... (truncated)"


def error_status(exc: BaseException, where: str) -> tuple[grpc.StatusCode, str]:
    """Our errors keep their code and (shortened) message; anything else is INTERNAL with a generic
    message, its details in the log only (`where` says which path met it)."""
    if isinstance(exc, InferSuiteError):
        return grpc.StatusCode[exc.code], short(exc.message)
    log.error("unhandled error in %s", where, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
