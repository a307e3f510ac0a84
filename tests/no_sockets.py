"""pytest plugin for the fast lane (`make test-fast`): a test that opens a network socket fails.

Unit tests run without sockets (ARCHITECTURE.md: unit = no sockets, integration = real servers on
port 0); this keeps the fast lane honest about it. Network sockets (IPv4/IPv6) are refused in Python's
socket module and at gRPC's server constructors (gRPC opens its sockets in C, and a channel opens
none until it calls a server, which then cannot exist); Unix sockets stay allowed, since every asyncio
event loop wakes itself through a socketpair.

    python -m pytest -p tests.no_sockets tests/unit
"""

from __future__ import annotations

import socket

import grpc
import grpc.aio

NETWORK_FAMILIES = {socket.AF_INET, socket.AF_INET6}


class SocketInUnitTest(RuntimeError):
    pass


def _refuse(what: str) -> SocketInUnitTest:
    return SocketInUnitTest(f"{what} in the fast lane: a test that needs the network belongs in tests/integration")


_socket_init = socket.socket.__init__


def _guarded_init(self: socket.socket, family: int = -1, type: int = -1, proto: int = -1,
                  fileno: int | None = None) -> None:
    if fileno is None and (socket.AF_INET if family == -1 else family) in NETWORK_FAMILIES:
        raise _refuse(f"socket.socket(family={family})")
    _socket_init(self, family, type, proto, fileno)


def _guard(module: object, name: str) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise _refuse(f"{getattr(module, '__name__', module)}.{name}()")

    setattr(module, name, refused)


def pytest_configure(config: object) -> None:
    socket.socket.__init__ = _guarded_init  # type: ignore[method-assign]
    for module in (grpc, grpc.aio):
        _guard(module, "server")
