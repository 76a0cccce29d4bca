"""free_port(): the ports handed to our servers are not the ones other programs get next."""

from __future__ import annotations

import socket

from deploy.servers import free_port


def bound_by_the_os() -> int:
    """What a program asking bind(0) for any free port gets, as Temporal's dev server does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_os_does_not_hand_out_a_port_free_port_chose():
    handed = {free_port() for _ in range(100)}
    assert len(handed) == 100

    # check no bind(0) gets one of them (after a plain bind-and-release, 61-91 of 5,000 got one
    # of 200 such ports here)
    assert [p for p in (bound_by_the_os() for _ in range(3000)) if p in handed] == []


def test_a_server_can_still_listen_on_the_port_it_was_given():
    port = free_port()
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)):
            server.accept()[0].close()
