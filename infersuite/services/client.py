"""The one client base under every typed client, as tritonclient has one: the channel (plaintext or
TLS, `infersuite.services.channel.ChannelSecurity`), the bearer token, message size limits, the default timeouts,
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

Retries are opt-in (`retry=RetryPolicy()`): gRPC's own retry policy (gRFC A6) in the channel's
service config, for UNAVAILABLE and RESOURCE_EXHAUSTED by default. gRPC waits the server's
`grpc-retry-pushback-ms` when the refusal carries one (the suite's overload refusals do) and does not
retry when it is negative; retry throttling stops retries while most calls fail, so a client never
multiplies an overload. A stream is retried only until its first answer arrives (gRPC's rule).
`wait_for_ready=True` makes every call wait for a connection (until its deadline) instead of failing
at once while the channel reconnects: what a client of a replicated or restarting server wants.
A call after `close()` raises `ClientClosedError` (FAILED_PRECONDITION), this client's own error.
"""

from __future__ import annotations

import asyncio
import json
import math
import numbers
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypedDict, TypeVar

import grpc

from infersuite.services.channel import ChannelOptions, ChannelSecurity, aio_channel, blocking_channel

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


class ClientClosedError(InferSuiteClientError):
    """A call on a client after its close()."""

    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, "the client is closed")


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retry policy for every method of a client's channel (gRFC A6: exponential backoff with
    jitter, the server's pushback honoured, retry throttling)."""

    max_attempts: int = 3  # calls in all, the first included (gRPC caps it at 5)
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    throttle_max_tokens: int = 10  # retries stop while the channel's token bucket is at half or less:
    throttle_token_ratio: float = 0.1  # each failure takes 1 token, each success gives back this many

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 2-5 (gRPC's cap), got {self.max_attempts!r}")
        for name in ("initial_backoff_s", "max_backoff_s", "backoff_multiplier", "throttle_token_ratio"):
            checked_timeout(getattr(self, name), name)
        if not 1 <= self.throttle_max_tokens <= 1000:
            raise ValueError(f"throttle_max_tokens must be 1-1000, got {self.throttle_max_tokens!r}")
        unknown = [c for c in self.retryable_codes if c not in grpc.StatusCode.__members__ or c == "OK"]
        if unknown or not self.retryable_codes:
            raise ValueError(f"retryable_codes must be gRPC status names such as UNAVAILABLE, got {unknown or '()'}")

    def service_config(self) -> str:
        """The channel's `grpc.service_config` (the empty name applies it to every method)."""
        return json.dumps({
            "methodConfig": [{"name": [{}], "retryPolicy": {
                "maxAttempts": self.max_attempts, "initialBackoff": f"{self.initial_backoff_s}s",
                "maxBackoff": f"{self.max_backoff_s}s", "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(self.retryable_codes)}}],
            "retryThrottling": {"maxTokens": self.throttle_max_tokens, "tokenRatio": self.throttle_token_ratio}})


def checked_timeout(timeout_s: float | None, name: str = "timeout_s") -> float | None:
    """None or a positive, finite number of seconds; anything else is a ValueError."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise ValueError(f"{name} must be a number of seconds or None, got {timeout_s!r}")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds or None, got {timeout_s!r}")
    return float(timeout_s)


def message_options(max_message_bytes: int, options: ChannelOptions = (),
                    retry: RetryPolicy | None = None) -> list[tuple[str, object]]:
    """The channel arguments: message limits, the retry policy's service config, then `options`."""
    retries: list[tuple[str, object]] = [("grpc.enable_retries", 1), ("grpc.service_config", retry.service_config())
                                         ] if retry is not None else []
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes), *retries, *options]


class _ClientOptions(TypedDict, total=False):
    timeout_s: float | None  # a unary call's deadline when the call gives none (None: no deadline)
    stream_timeout_s: float | None  # a whole stream's deadline when the call gives none (None: no deadline)
    security: ChannelSecurity | None  # TLS, mutual TLS and/or a bearer token; None: plaintext, no token
    max_message_bytes: int  # send and receive limit, 16 MiB like the server's default
    options: ChannelOptions  # more grpc channel arguments
    retry: RetryPolicy | None  # gRPC's retry policy for every call; None: no retries
    wait_for_ready: bool  # calls wait for a connection until their deadline instead of failing at once


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
                 security: ChannelSecurity | None, wait_for_ready: bool):
        self.timeout_s = checked_timeout(timeout_s)
        self.stream_timeout_s = checked_timeout(stream_timeout_s, "stream_timeout_s")
        self._metadata = (security or ChannelSecurity()).metadata
        self._wait_for_ready = bool(wait_for_ready)
        self._closed = False

    def _call_options(self, timeout: float | None) -> dict[str, Any]:
        """The keyword arguments of every call; raises ClientClosedError after close()."""
        if self._closed:
            raise ClientClosedError()
        return {"timeout": timeout, "metadata": self._metadata, "wait_for_ready": self._wait_for_ready}

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
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, options: ChannelOptions = (),
                 retry: RetryPolicy | None = None, wait_for_ready: bool = False):
        super().__init__(timeout_s=timeout_s, stream_timeout_s=stream_timeout_s, security=security,
                         wait_for_ready=wait_for_ready)
        self._channel = channel or aio_channel(target, security, message_options(max_message_bytes, options, retry))

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        await self._channel.close()

    async def _unary(self, method: Callable[..., Any], request: Any, timeout_s: float | None) -> Any:
        """One unary call with the per-call or default deadline; a failure is this client's error."""
        options = self._call_options(self._timeout(timeout_s))
        try:
            return await method(request, **options)
        except grpc.aio.AioRpcError as err:
            raise self.error.from_rpc_error(err) from None

    def _stream(self, method: Callable[..., Any], requests: AsyncIterator[Any],
                timeout_s: float | None) -> AsyncIterator[Any]:
        """A stream-stream call over `requests`, sent as they are produced. A plain function, so that
        a bad timeout or a closed client raises here, at the call, not at the first `async for` step."""
        return self._responses(method, _Requests(requests), self._call_options(self._stream_timeout(timeout_s)))

    async def _responses(self, method: Callable[..., Any], requests: _Requests,
                         options: dict[str, Any]) -> AsyncIterator[Any]:
        call = method(requests.relay(), **options)
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
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, options: ChannelOptions = (),
                 retry: RetryPolicy | None = None, wait_for_ready: bool = False):
        super().__init__(timeout_s=timeout_s, stream_timeout_s=stream_timeout_s, security=security,
                         wait_for_ready=wait_for_ready)
        self._channel = channel or blocking_channel(target, security,
                                                    message_options(max_message_bytes, options, retry))

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._channel.close()

    def _unary(self, method: Callable[..., Any], request: Any, timeout_s: float | None) -> Any:
        options = self._call_options(self._timeout(timeout_s))
        try:
            return method(request, **options)
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
