"""Client-side connection settings shared by the typed clients and the edge SDK: plaintext or TLS
(root certificates, an optional client certificate and key for mutual TLS) and an optional bearer
token, sent as `authorization: Bearer <token>` with every call. grpc only: no runtime, no pydantic.

    security = ChannelSecurity.from_files(token="s3cret", root_certificates="ca.pem",
                                          client_certificate="client.pem", client_key="client.key")
    async with CtrClient("scoring.internal:50051", security=security) as ctr: ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

ChannelOptions = Sequence[tuple[str, object]]


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client connects. `tls` is implied by any certificate; root_certificates=None with tls=True
    trusts the system roots."""

    token: str | None = None  # bearer token (the server's INFERSUITE_AUTH_TOKEN)
    tls: bool = False
    root_certificates: bytes | None = None  # PEM of the CA that signed the server's certificate
    client_certificate: bytes | None = None  # PEM chain presented for mutual TLS
    client_key: bytes | None = None  # PEM key of client_certificate
    server_name: str | None = None  # TLS name to verify when it differs from the target's host

    @classmethod
    def from_files(cls, *, token: str | None = None, tls: bool = False, root_certificates: str | Path | None = None,
                   client_certificate: str | Path | None = None, client_key: str | Path | None = None,
                   server_name: str | None = None) -> ChannelSecurity:
        if (client_certificate is None) != (client_key is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")
        return cls(token or None, tls or bool(root_certificates or client_certificate),
                   _read(root_certificates), _read(client_certificate), _read(client_key), server_name)

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.root_certificates is not None or self.client_certificate is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata: the bearer token, if any (pass as `metadata=` on every call)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.client_key, self.client_certificate)

    def options(self, options: ChannelOptions = ()) -> list[tuple[str, object]]:
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return [*options, *extra]


def aio_channel(target: str, security: ChannelSecurity | None, options: ChannelOptions = ()) -> grpc.aio.Channel:
    security = security or ChannelSecurity()
    if security.uses_tls:
        return grpc.aio.secure_channel(target, security.credentials(), security.options(options))
    return grpc.aio.insecure_channel(target, security.options(options))


def blocking_channel(target: str, security: ChannelSecurity | None, options: ChannelOptions = ()) -> grpc.Channel:
    security = security or ChannelSecurity()
    if security.uses_tls:
        return grpc.secure_channel(target, security.credentials(), security.options(options))
    return grpc.insecure_channel(target, security.options(options))


def security_from_env(environ: dict[str, str] | None = None) -> ChannelSecurity:
    """ChannelSecurity from INFERSUITE_CLIENT_TOKEN, INFERSUITE_CLIENT_TLS (1 = system roots),
    INFERSUITE_CLIENT_ROOT_CERTS, INFERSUITE_CLIENT_CERT, INFERSUITE_CLIENT_KEY and
    INFERSUITE_CLIENT_SERVER_NAME (files are PEM paths); all unset = plaintext without a token."""
    env = os.environ if environ is None else environ
    return ChannelSecurity.from_files(
        token=env.get("INFERSUITE_CLIENT_TOKEN"), tls=env.get("INFERSUITE_CLIENT_TLS", "") in ("1", "true"),
        root_certificates=env.get("INFERSUITE_CLIENT_ROOT_CERTS"), client_certificate=env.get("INFERSUITE_CLIENT_CERT"),
        client_key=env.get("INFERSUITE_CLIENT_KEY"), server_name=env.get("INFERSUITE_CLIENT_SERVER_NAME"))
