"""The one client base under every typed client, as tritonclient has one: the channel (plaintext or
TLS, `services.channel.ChannelSecurity`), the bearer token, message size limits, the default timeouts,
and ONE exception type, `InferSuiteClientError`, carrying the gRPC status code. grpc only: no runtime,
no pydantic, no torch (the installed client package imports this).

Timeouts, the same on every method of every client:
- `timeout_s=None` (per call) means the client's default: `timeout_s` for unary calls,
  `stream_timeout_s` for streams (None there: no deadline, as tritonclient's `start_stream`);
- a positive number of seconds bounds that call (a stream: the whole stream);
- 0, a negative number or NaN raises ValueError before anything is sent.

Streams are lazy: each input item is turned into a request when gRPC asks for it, so the first
request goes out before the input iterator ends. An input may be an async iterable (which may wait
for anything, e.g. the answers) or a plain iterable (read on the event loop: it must not block).
An exception raised by the input iterator ends the stream and is raised again to the reader
(grpc.aio alone would swallow it and only cancel the call).

No retries: none of the clients retried before this base, and a retry of a non-idempotent stream
is the caller's decision. Retries for unary calls can be asked of gRPC itself through channel
`options` (`("grpc.service_config", json.dumps({"methodConfig": [...]}))`).
"""

from __future__ import annotations

import asyncio
import math
import numbers
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, ClassVar, Self, TypedDict, TypeVar

import grpc

from services.channel import ChannelOptions, ChannelSecurity, aio_channel, blocking_channel

T = TypeVar("T")
Source = Iterable[T] | AsyncIterable[T]

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the server's default INFERSUITE_MAX_MESSAGE_BYTES
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


class InferSuiteClientError(Exception):
    """A failed call: the gRPC status code and the server's message (`str()` is "CODE_NAME: message")."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> Self:
        """From a failed call's error (grpc.aio.AioRpcError, or the blocking API's grpc.RpcError + grpc.Call)."""
        if isinstance(err, grpc.Call | grpc.aio.AioRpcError):
            return cls(err.code() or grpc.StatusCode.UNKNOWN, err.details() or "")
        return cls(grpc.StatusCode.UNKNOWN, str(err))  # an RpcError that is no call: grpc raised it itself

    @classmethod
    def from_status(cls, code: int, message: str) -> Self:
        """From a numeric status in a message (a stream's per-request error); unknown numbers are UNKNOWN."""
        return cls(_STATUS_CODES.get(code, grpc.StatusCode.UNKNOWN), message)


def checked_timeout(timeout_s: float | None, name: str = "timeout_s") -> float | None:
    """None or a positive, finite number of seconds; anything else is a ValueError."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise ValueError(f"{name} must be a number of seconds or None, got {timeout_s!r}")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds or None, got {timeout_s!r}")
    return float(timeout_s)


def message_options(max_message_bytes: int, options: ChannelOptions = ()) -> list[tuple[str, object]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes), *options]


class _ClientOptions(TypedDict, total=False):
    timeout_s: float | None  # a unary call's deadline when the call gives none (None: no deadline)
    stream_timeout_s: float | None  # a whole stream's deadline when the call gives none (None: no deadline)
    security: ChannelSecurity | None  # TLS, mutual TLS and/or a bearer token; None: plaintext, no token
    max_message_bytes: int  # send and receive limit, 16 MiB like the server's default
    options: ChannelOptions  # more grpc channel arguments, e.g. grpc.service_config


class AsyncClientOptions(_ClientOptions, total=False):
    """The keyword arguments every asyncio typed client takes (`CtrClient(target, **options)`)."""

    channel: grpc.aio.Channel | None  # use this channel instead of building one (the client closes it)


class BlockingClientOptions(_ClientOptions, total=False):
    """The keyword arguments of the blocking clients (`EdgeDevice(bundle, target, **options)`)."""

    channel: grpc.Channel | None  # use this channel instead of building one (the client closes it)


class _ClientConfig:
    """What the async and the blocking base share: the token metadata, the default timeouts, the error type."""

    error: ClassVar[type[InferSuiteClientError]] = InferSuiteClientError  # a typed client names its alias

    def __init__(self, *, timeout_s: float | None, stream_timeout_s: float | None,
                 security: ChannelSecurity | None):
        self.timeout_s = checked_timeout(timeout_s)
        self.stream_timeout_s = checked_timeout(stream_timeout_s, "stream_timeout_s")
        self._metadata = (security or ChannelSecurity()).metadata

    def _timeout(self, timeout_s: float | None) -> float | None:
        """A unary call's deadline in seconds: the per-call value, else the client's default."""
        return self.timeout_s if timeout_s is None else checked_timeout(timeout_s)

    def _stream_timeout(self, timeout_s: float | None) -> float | None:
        return self.stream_timeout_s if timeout_s is None else checked_timeout(timeout_s)


class AsyncClient(_ClientConfig):
    """The base of the asyncio typed clients: `async with SomeClient(target) as client: ...`.
    `channel` replaces the one built from target/security/options (tests, shared channels); the
    client then still closes it."""

    def __init__(self, target: str, *, timeout_s: float | None = 5.0, stream_timeout_s: float | None = None,
                 channel: grpc.aio.Channel | None = None, security: ChannelSecurity | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, options: ChannelOptions = ()):
        super().__init__(timeout_s=timeout_s, stream_timeout_s=stream_timeout_s, security=security)
        self._channel = channel or aio_channel(target, security, message_options(max_message_bytes, options))

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, method: Callable[..., Any], request: Any, timeout_s: float | None) -> Any:
        """One unary call with the per-call or default deadline; a failure is this client's error."""
        timeout = self._timeout(timeout_s)
        try:
            return await method(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise self.error.from_rpc_error(err) from None

    def _stream(self, method: Callable[..., Any], requests: AsyncIterator[Any],
                timeout_s: float | None) -> AsyncIterator[Any]:
        """A stream-stream call over `requests`, sent as they are produced. A plain function, so that
        a bad timeout raises here, at the call, not at the first `async for` step."""
        return self._responses(method, _Requests(requests), self._stream_timeout(timeout_s))

    async def _responses(self, method: Callable[..., Any], requests: _Requests,
                         timeout: float | None) -> AsyncIterator[Any]:
        call = method(requests.relay(), timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            requests.raise_error()
            raise self.error.from_rpc_error(err) from None
        except asyncio.CancelledError:
            requests.raise_error()  # grpc.aio cancels a call whose input failed: the reader sees CancelledError
            raise
        finally:
            call.cancel()
        requests.raise_error()


class _Requests:
    """Relays a request iterator to grpc.aio and keeps the exception it raised, if any, for the reader."""

    def __init__(self, source: AsyncIterator[Any]):
        self._source = source
        self._error: BaseException | None = None

    async def relay(self) -> AsyncIterator[Any]:
        try:
            async for request in self._source:
                yield request
        except Exception as err:  # handed to the reader; grpc.aio would only log it at debug level
            self._error = err
            raise

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


class BlockingClient(_ClientConfig):
    """The base of blocking clients (the edge SDK): `with SomeClient(target) as client: ...`."""

    def __init__(self, target: str, *, timeout_s: float | None = 5.0, stream_timeout_s: float | None = None,
                 channel: grpc.Channel | None = None, security: ChannelSecurity | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, options: ChannelOptions = ()):
        super().__init__(timeout_s=timeout_s, stream_timeout_s=stream_timeout_s, security=security)
        self._channel = channel or blocking_channel(target, security, message_options(max_message_bytes, options))

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _unary(self, method: Callable[..., Any], request: Any, timeout_s: float | None) -> Any:
        timeout = self._timeout(timeout_s)
        try:
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise self.error.from_rpc_error(err) from None


async def each(items: Source[T]) -> AsyncIterator[T]:
    """An async iterator over a plain or an async iterable, pulling one item at a time."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
