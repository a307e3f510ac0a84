"""The shared serving core. Knows nothing about any model family."""

from services.runtime.errors import (
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
from services.runtime.handler_wrapper import HandlerRegistry
from services.runtime.server import InferSuiteServer, Runtime, ServiceModule, build_server
from services.runtime.settings import RuntimeSettings

__all__ = [
    "DeadlineExceeded", "FailedPrecondition", "HandlerRegistry", "InferSuiteError", "InferSuiteServer",
    "InvalidArgument", "NonFiniteOutput", "NotFound", "ResourceExhausted", "Runtime", "RuntimeSettings",
    "ServiceModule", "Unavailable", "Unimplemented", "build_server",
]
