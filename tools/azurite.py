"""Start Azurite (the Azure Storage emulator) on 127.0.0.1 for tests, benchmarks and `make run`.

    with start_azurite() as azurite:          # free ports, in-memory storage
        os.environ["AzureWebJobsStorage"] = azurite.connection_string

`stop()`/`kill()` then `start()` again simulate a storage outage: the ports stay the same,
the data does not (in-memory persistence). Manual use:
`python -m tools.azurite --blob-port 10000 --queue-port 10001 --table-port 10002`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
HOST = "127.0.0.1"
SERVICES = ("blob", "queue", "table")
# The emulator's well-known development account, published in Microsoft's docs: not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")


class Azurite:
    """One Azurite process; port 0 means "any free port", fixed after the first start."""

    def __init__(self, blob_port: int = 0, queue_port: int = 0, table_port: int = 0, timeout: float = 120.0) -> None:
        self.ports = {"blob": blob_port, "queue": queue_port, "table": table_port}
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._log_path = Path(self._workdir.name) / "azurite.log"
        atexit.register(self.kill)  # never leave an emulator behind a crashed test run

    blob_port = property(lambda self: self.ports["blob"])
    queue_port = property(lambda self: self.ports["queue"])
    table_port = property(lambda self: self.ports["table"])

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(f"{s.capitalize()}Endpoint=http://{HOST}:{self.ports[s]}/{ACCOUNT}" for s in SERVICES)
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};{endpoints};"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def output(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def start(self) -> Azurite:
        if self.running:
            return self
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} not found: run make install")
        args = [str(AZURITE), "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
        for service in SERVICES:
            args += [f"--{service}Host", HOST, f"--{service}Port", str(self.ports[service])]
        with self._log_path.open("wb") as log:  # a file, not a pipe: nobody has to drain it
            self._proc = subprocess.Popen(
                args,
                cwd=self._workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # keep terminal signals ours
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"Azurite exited during startup:\n{self.output}")
            found = {name.lower(): int(port) for name, port in _LISTENING.findall(self.output)}
            if len(found) == len(SERVICES) and all(_accepts(port) for port in found.values()):
                self.ports.update(found)
                return
            time.sleep(0.05)
        raise RuntimeError(f"Azurite did not start within {self.timeout:.0f} s:\n{self.output}")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM); kills if Azurite hangs."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def kill(self) -> None:
        """Abrupt death (SIGKILL), like a storage outage."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._workdir.cleanup()
        atexit.unregister(self.kill)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_azurite(blob_port: int = 0, queue_port: int = 0, table_port: int = 0, timeout: float = 20.0) -> Azurite:
    """Start Azurite and wait until its three services accept connections."""
    return Azurite(blob_port, queue_port, table_port, timeout).start()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for service in SERVICES:
        parser.add_argument(f"--{service}-port", type=int, default=0, help="0 = any free port")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    with start_azurite(args.blob_port, args.queue_port, args.table_port) as azurite:
        print(f"azurite ready: blob={azurite.blob_port} queue={azurite.queue_port} table={azurite.table_port}", flush=True)
        print(f"AzureWebJobsStorage={azurite.connection_string}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
