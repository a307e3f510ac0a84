"""The no-sockets rule for unit tests holds where tests/no_sockets.py is loaded (make test, make test-fast)."""

from __future__ import annotations

import socket

import grpc
import pytest


def test_a_unit_test_cannot_open_a_network_socket_or_a_grpc_server(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.has_plugin("tests.no_sockets"):
        pytest.skip("run without -p tests.no_sockets (make test and make test-fast load it)")
    from tests.no_sockets import SocketInUnitTest

    with pytest.raises(SocketInUnitTest, match="belongs in tests/integration"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketInUnitTest, match=r"grpc\.aio\.server\(\) in a unit test"):
        grpc.aio.server()
    left, right = socket.socketpair()  # Unix sockets stay allowed (every asyncio loop uses one)
    left.close()
    right.close()
