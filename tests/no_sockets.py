"""pytest plugin: a unit test (under tests/unit) that opens a network socket fails.

Unit tests run without sockets (ARCHITECTURE.md: unit = no sockets, integration = real servers on
port 0); `make test` and `make test-fast` load this plugin, which guards each test under tests/unit
from its setup to its teardown, and no other test. It does not reorder the tests: with the unit tests
run first, some state they leave kept a later integration test's WARNING record out of its caplog.
Network sockets (IPv4/IPv6) are refused in Python's socket module and at gRPC's server constructors
(gRPC opens its sockets in C, and a channel opens none until it calls a server, which then cannot
exist); Unix sockets stay allowed, since every asyncio event loop wakes itself through a socketpair.

    python -m pytest -p tests.no_sockets tests/unit
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

NETWORK_FAMILIES = {socket.AF_INET, socket.AF_INET6}
UNIT = Path(__file__).resolve().parent / "unit"


class SocketInUnitTest(RuntimeError):
    pass


def _refuse(what: str) -> SocketInUnitTest:
    return SocketInUnitTest(f"{what} in a unit test: a test that needs the network belongs in tests/integration")


_socket_init = socket.socket.__init__


def _guarded_init(self: socket.socket, family: int = -1, type: int = -1, proto: int = -1,
                  fileno: int | None = None) -> None:
    if fileno is None and (socket.AF_INET if family == -1 else family) in NETWORK_FAMILIES:
        raise _refuse(f"socket.socket(family={family})")
    _socket_init(self, family, type, proto, fileno)


_SERVERS = {(module, "server"): module.server for module in (grpc, grpc.aio)}


def _refused_server(module: Any) -> Any:
    def refused(*args: object, **kwargs: object) -> None:
        raise _refuse(f"{getattr(module, '__name__', module)}.server()")

    return refused


def _install() -> None:
    socket.socket.__init__ = _guarded_init  # type: ignore[method-assign]
    for module, name in _SERVERS:
        setattr(module, name, _refused_server(module))


def _uninstall() -> None:
    socket.socket.__init__ = _socket_init  # type: ignore[method-assign]
    for (module, name), original in _SERVERS.items():
        setattr(module, name, original)


def _unit(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().is_relative_to(UNIT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    guarded = _unit(item)
    if guarded:
        _install()
    try:
        yield
    finally:
        if guarded:
            _uninstall()
