"""The whole service on loopback: Azurite, the local identity endpoint, the Graph simulator
and the dev host running function_app.py. Used by `make run`, the integration tests and the
benchmarks. Never deployed.

    .venv/bin/python -m tools.local_stack [--port 7071]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Self

from shared.settings import SettingsError, load_settings
from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Anything that could point azure-identity somewhere other than the local endpoint.
_SCRUBBED = (
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "LOCAL_DEV_CREDENTIAL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_announced(
    port: int, process: subprocess.Popen[bytes], name: str, log_path: Path, offset: int = 0, timeout: float = 120
) -> None:
    """Wait for the service's own "listening on / ready on http://127.0.0.1:PORT" line: a port
    that merely accepts connections may belong to another process (ports race under xdist)."""
    announcement = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        if announcement.encode() in log_path.read_bytes()[offset:]:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not announce {announcement} within {timeout}s:\n{log_path.read_text()[-3000:]}")


class Service:
    """One child process with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], port: int, log_dir: Path) -> None:
        self.name, self.args, self.env, self.port = name, args, env, port
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart announces itself again
        self._log = self.log_path.open("ab")  # open while the process runs; closed in stop()
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until_announced(self.port, self.process, self.name, self.log_path, offset)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class LocalStack:
    def __init__(
        self,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        log_dir: Path | None = None,
        sim_env: dict[str, str] | None = None,
        identity_env: dict[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="signout-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite()
        self.port, self.sim_port, self.identity_port = port or free_port(), free_port(), free_port()
        signing_key = secrets.token_urlsafe(32)  # per run; never stored
        self.identity_header = secrets.token_urlsafe(16)
        base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("AzureWebJobs")}
        base["PYTHONUNBUFFERED"] = "1"
        py = sys.executable
        self.identity = Service(
            "identity",
            [py, "-m", "tools.identity_endpoint", "--port", str(self.identity_port)],
            {**base, "IDENTITY_HEADER": self.identity_header, "LOCAL_TOKEN_SIGNING_KEY": signing_key, **(identity_env or {})},
            self.identity_port,
            self.log_dir,
        )
        self.graph = Service(
            "graph_sim",
            [py, "-m", "tools.graph_sim", "--port", str(self.sim_port)],
            {**base, "LOCAL_TOKEN_SIGNING_KEY": signing_key, **(sim_env or {})},
            self.sim_port,
            self.log_dir,
        )
        self.app_settings = {
            "GRAPH_ENDPOINT": self.sim_url,
            "IDENTITY_ENDPOINT": f"{self.identity_url}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "SIGNOUT_QUEUE_NAME": "signout-requests",
            "STATUS_TABLE_NAME": "signouttasks",
            "BULK_QUEUE_NAME": "signout-bulk",
            "BULK_PAGE_QUEUE_NAME": "signout-bulk-pages",
            "PROTECTED_USERS": "breakglass@contoso.com",
            **(settings or {}),
        }
        self._base_env = base
        self.devhost: Service | None = None
        self.real_tenant = False

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://{HOST}:{self.sim_port}"

    @property
    def identity_url(self) -> str:
        return f"http://{HOST}:{self.identity_port}"

    def use_real_tenant(self, credential: str, graph_endpoint: str, protected_users: str) -> None:
        """Talk to real Microsoft Graph with azure-identity's developer credential (opt-in); the
        simulator's break-glass account gives way to the tenant's own (`protected_users`)."""
        self.real_tenant = True
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
            self.app_settings.pop(name, None)
        self.app_settings.update(
            {"LOCAL_DEV_CREDENTIAL": credential, "GRAPH_ENDPOINT": graph_endpoint, "PROTECTED_USERS": protected_users}
        )

    def start(self) -> LocalStack:
        self.azurite.start()
        if not self.real_tenant:
            endpoints = {"GRAPH_ENDPOINT": self.sim_url, "IDENTITY_ENDPOINT": f"{self.identity_url}/msi/token"}
            self._start_on_a_free_port(self.identity, "identity_port")
            self._start_on_a_free_port(self.graph, "sim_port")
            moved = {"GRAPH_ENDPOINT": self.sim_url, "IDENTITY_ENDPOINT": f"{self.identity_url}/msi/token"}
            for name, old in endpoints.items():  # a port taken meanwhile moved the service: follow it
                if self.app_settings.get(name) == old:
                    self.app_settings[name] = moved[name]
        self.start_devhost()
        return self

    def _start_on_a_free_port(self, service: Service, attribute: str) -> None:
        """Start `service`; if another process took its port since it was chosen (ports race under
        xdist and on busy machines), move it to a fresh one."""
        for attempt in range(3):
            try:
                service.start()
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or attempt == 2:  # the last try
                    raise
                service.stop()
                service.port = free_port()
                service.args[service.args.index("--port") + 1] = str(service.port)
                setattr(self, attribute, service.port)
            else:
                return

    def start_devhost(self) -> None:
        env = {**self._base_env, "AzureWebJobsStorage": self.azurite.connection_string, **self.app_settings}
        self.devhost = Service(
            "devhost", [sys.executable, "-m", "tools.devhost", "--port", str(self.port)], env, self.port, self.log_dir
        )
        self._start_on_a_free_port(self.devhost, "port")

    def stop(self) -> None:
        for service in (self.devhost, self.graph, self.identity):
            if service:
                service.stop()
        self.azurite.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


EXAMPLE = """
Force sign-out service running on {url}  (Ctrl-C stops everything)
  Admin console: {url}/api/console
  Azurite (storage): queue {queue_port}, table {table_port}   Graph: {graph}   logs: {logs}
{warning}
Sign out {who}:
  curl -si -X POST {url}/api/signouts -H 'Content-Type: application/json' \\
       -d '{{"users": ["{user}"], "description": "INC-1234 compromised account"}}'

Then follow the Location header it returns (202 while queued, 200 with the result):
  curl -s {url}/api/signouts/<task id>
Remediation log and health:
  curl -s '{url}/api/signouts?top=10'
  curl -s {url}/api/health
"""


REAL_TENANT_WARNING = """
  REAL TENANT: every request signs out real users of the tenant you are signed in to.
  Never signed out (PROTECTED_USERS): {count} account(s).
"""
NO_PROTECTED_USERS = (
    "refusing to start: --real-tenant signs out real users of your tenant, so PROTECTED_USERS must first name "
    "its break-glass accounts (object ids or UPNs), e.g.\n"
    "  PROTECTED_USERS='breakglass@contoso.com' make run REAL_TENANT=azure_cli"
)


def check_real_tenant(env: Mapping[str, str]) -> str:
    """Before anything starts: a real-tenant run needs valid PROTECTED_USERS (returned) and GRAPH_ENDPOINT."""
    protected = env.get("PROTECTED_USERS", "").strip()
    if not protected:
        raise SystemExit(NO_PROTECTED_USERS)
    try:
        load_settings({"PROTECTED_USERS": protected, "GRAPH_ENDPOINT": env.get("GRAPH_ENDPOINT", "")})
    except SettingsError as exc:
        raise SystemExit(f"refusing to start: {exc}") from None
    return protected


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument(
        "--real-tenant",
        metavar="CREDENTIAL",
        choices=["azure_cli", "azd"],
        help="use real Microsoft Graph with this developer credential instead of the simulator "
        "(needs PROTECTED_USERS: the tenant's break-glass accounts)",
    )
    args = parser.parse_args(argv)
    protected = check_real_tenant(os.environ) if args.real_tenant else ""
    stack = LocalStack(port=args.port, log_dir=ROOT / ".run")
    if args.real_tenant:
        stack.use_real_tenant(args.real_tenant, os.environ.get("GRAPH_ENDPOINT", "https://graph.microsoft.com"), protected)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print(example(stack), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


def example(stack: LocalStack) -> str:
    """What to try first; against a real tenant, a warning and no demo user to copy."""
    ports = {"url": stack.base_url, "queue_port": stack.azurite.queue_port, "table_port": stack.azurite.table_port}
    if stack.real_tenant:
        warning = REAL_TENANT_WARNING.format(count=len(load_settings(stack.app_settings).protected_users))
        return EXAMPLE.format(
            **ports,
            graph=stack.app_settings["GRAPH_ENDPOINT"],
            logs=stack.log_dir,
            warning=warning,
            who="a user",
            user="<UPN or object id>",
        )
    return EXAMPLE.format(
        **ports,
        graph=f"simulator {stack.sim_url}",
        logs=stack.log_dir,
        warning="",
        who="the demo user",
        user="adele.vance@contoso.com",
    )


if __name__ == "__main__":
    main()
