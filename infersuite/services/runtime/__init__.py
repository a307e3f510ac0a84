"""The shared serving core. Knows nothing about any model family."""

from infersuite.services.runtime.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InferSuiteError,
    InvalidArgument,
    NonFiniteOutput,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from infersuite.services.runtime.handler_wrapper import HandlerRegistry
from infersuite.services.runtime.server import InferSuiteServer, Runtime, ServiceModule, build_server
from infersuite.services.runtime.settings import RuntimeSettings

__all__ = [
    "DeadlineExceeded", "FailedPrecondition", "HandlerRegistry", "InferSuiteError", "InferSuiteServer",
    "InvalidArgument", "NonFiniteOutput", "NotFound", "ResourceExhausted", "Runtime", "RuntimeSettings",
    "ServiceModule", "Unavailable", "Unimplemented", "build_server",
]
