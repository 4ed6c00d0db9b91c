"""tools/azurite.py, and the devhost riding out a storage outage."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.queue import QueueServiceClient

import tools.azurite
from tests.integration.helpers import wait_until
from tools.azurite import Azurite, start_azurite

from .conftest import Sample


def test_outage_and_restart_on_the_same_ports(azurite: Azurite, sample) -> None:
    ports = (azurite.blob_port, azurite.queue_port, azurite.table_port)
    assert len(set(ports)) == 3 and "devstoreaccount1" in azurite.connection_string
    s: Sample = sample()
    try:
        azurite.kill()  # storage outage while the devhost polls
        with pytest.raises(ServiceRequestError):
            QueueServiceClient.from_connection_string(azurite.connection_string, retry_total=0).get_service_properties()
    finally:
        azurite.start()  # later tests on this worker share this emulator
    assert (azurite.blob_port, azurite.queue_port, azurite.table_port) == ports
    # In-memory storage came back empty: the devhost recreates its queue and carries on.
    s.results.client.create_queue()
    created = f"Created queue '{s.queue_name}'"
    wait_until(lambda: s.host.log.count(created) >= 2, lambda: f"the dev host recreated its queue:\n{s.host.log}")
    s.send("after outage")
    s.results.wait(lambda r: any(x["kind"] == "done" and x["body"] == "after outage" for x in r))
    assert s.host.stop() == 0


def test_missing_node_modules_says_make_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tools.azurite, "AZURITE", tmp_path / "missing")
    with pytest.raises(RuntimeError, match="run make install"):
        start_azurite()
