"""The test harness's TCP proxy leaves nothing listening once closed (a zombie accept() had
forwarded a later git server's connections to the API server)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.tcpproxy import TcpProxy


def test_a_closed_proxy_leaves_its_port_and_connections_closed() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    try:
        with TcpProxy(upstream.getsockname()) as proxy:
            client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            server, _ = upstream.accept()
            client.sendall(b"ping")
            assert server.recv(4) == b"ping"
            # Let the acceptor block in accept() again: the state in which close() alone left
            # the port listening (the fixed proxy passes whatever the timing).
            time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        server.settimeout(5)
        assert server.recv(4) == b""  # the upstream side sees the connection end
        client.close()
        server.close()
    finally:
        upstream.close()
