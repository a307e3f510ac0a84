"""The one error hierarchy of the suite. Handlers raise these; the call wrapper (handler_wrapper.py) maps them.

Free of grpc on purpose: domain handlers raise them without knowing the transport. `code` is
the name of the gRPC status code the call wrapper answers with.
"""

from __future__ import annotations


class InferSuiteError(Exception):
    """Base class; its message is safe to show to the client."""

    code = "INTERNAL"

    def __init__(self, message: str, *, trailing_metadata: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.message = message
        self.trailing_metadata = trailing_metadata


class InvalidArgument(InferSuiteError):
    """The request is malformed; the message names the field and what is wrong with it."""

    code = "INVALID_ARGUMENT"


class Unauthenticated(InferSuiteError):
    """A call to a guarded service without the right bearer token."""

    code = "UNAUTHENTICATED"


class NotFound(InferSuiteError):
    """An unknown model or version."""

    code = "NOT_FOUND"


class FailedPrecondition(InferSuiteError):
    """The request is well formed but cannot be served in the current state (e.g. version)."""

    code = "FAILED_PRECONDITION"


class RepositoryError(FailedPrecondition):
    """A model repository file is missing, does not parse or breaks its schema (config.pbtxt, meta.json,
    aliases.json): the repository's fault, never the caller's. The message names the model (and file or
    field) and no host path, so it may reach a caller and RepositoryIndex."""


class Unavailable(InferSuiteError):
    """Not ready yet, shutting down, or the backend is unreachable."""

    code = "UNAVAILABLE"


# gRFC A6: gRPC's own retry policy waits this long before its next attempt (and a client without
# one can read it); a negative or unparsable value tells the client not to retry.
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"


class ResourceExhausted(InferSuiteError):
    """Overload: a queue is full. Carries a retry hint in trailing metadata (grpc-retry-pushback-ms)."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: float | None = 0.1):
        # None: retrying cannot help (e.g. an answer over the message limit): pushback -1 says do not retry.
        pushback = "-1" if retry_after_s is None else str(max(int(retry_after_s * 1000), 1))
        super().__init__(message, trailing_metadata=((RETRY_PUSHBACK_KEY, pushback),))
        self.retry_after_s = retry_after_s


class NonFiniteOutput(InferSuiteError):
    """A model answered with NaN or Inf: a broken model or an input it cannot handle, never an OK reply."""

    code = "INTERNAL"


class DeadlineExceeded(InferSuiteError):
    """The request's deadline cannot be met (or has passed)."""

    code = "DEADLINE_EXCEEDED"


class Unimplemented(InferSuiteError):
    """An RPC this server does not offer (e.g. the OIP's shared-memory and trace extensions)."""

    code = "UNIMPLEMENTED"
