"""The local stack under a port race: a port taken between choosing it and binding it moves the
service to a fresh port, and the dev host follows it (a busy CI machine hit this)."""

from __future__ import annotations

import socket

import httpx

from tools.local_stack import HOST, LocalStack


def test_a_taken_port_moves_the_service_and_the_app_follows_it() -> None:
    stack = LocalStack()
    taken = stack.identity_port
    with socket.socket() as squatter:
        squatter.bind((HOST, taken))
        squatter.listen()
        with stack:
            assert stack.identity_port != taken
            assert stack.app_settings["IDENTITY_ENDPOINT"] == f"{stack.identity_url}/msi/token"
            health = httpx.get(f"{stack.base_url}/api/health", timeout=60).json()
    assert health["checks"]["graphPermissions"]["state"] == "ok"  # the app got a token from the moved endpoint
