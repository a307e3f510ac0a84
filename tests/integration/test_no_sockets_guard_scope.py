"""The no-sockets guard (tests/no_sockets.py) is lifted outside tests/unit: integration tests open sockets."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.integration


def test_an_integration_test_opens_a_socket_even_with_the_guard_loaded() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] > 0
