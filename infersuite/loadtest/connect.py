"""How the load generator authenticates: the bearer token travels as `authorization` call metadata,
added by a client interceptor on the load channels (so the engine's send loop is unchanged and pays
nothing when no token is set), and blocking channels for discovery honour the same TLS settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "INFERSUITE_CLIENT_TOKEN"


def read_token(token_file: str | None) -> str | None:
    """The token from --token-file, else from $INFERSUITE_CLIENT_TOKEN (never from argv: reports record argv)."""
    if token_file:
        return Path(token_file).read_text().strip() or None
    return os.environ.get(TOKEN_ENV) or None


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every unary call of an aio channel."""

    def __init__(self, token: str):
        self._metadata = token_metadata(token)

    async def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: Any,
                                    request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *self._metadata)
        return await continuation(client_call_details._replace(metadata=metadata), request)


def blocking_channel(target: Any) -> grpc.Channel:
    """A blocking channel to a loadtest Target (TLS settings and options as the load channels)."""
    from infersuite.loadtest.engine import _credentials, channel_options

    options = channel_options(target)
    if target.tls:
        return grpc.secure_channel(target.address, _credentials(target), options)
    return grpc.insecure_channel(target.address, options)
