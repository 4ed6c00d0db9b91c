"""Helpers shared by the bulk benchmarks (bench.quota, bench.ceiling, bench.priority, bench.fanout):
the stack, the machine line, CPU load, memory, bulk jobs and the Graph simulator's request log."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tools.graph_sim import SEED_USERS as _SEEDS
from tools.local_stack import LocalStack

SEED_USERS = len(_SEEDS)  # the simulator's own directory (adele, megan, ...), on top of GRAPH_SIM_USERS
ALL_USERS = {"allUsers": True, "confirm": "sign out all users", "description": "benchmark"}
MAX_WRITES_PER_SECOND = "1000"  # GRAPH_WRITES_PER_SECOND's upper bound (shared/settings.py): "pacer not binding"
_TICK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    return (
        f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, 1 dev host process"
    )


@contextmanager
def local_stack(
    users: int, sim_env: dict[str, str] | None = None, settings: dict[str, str] | None = None
) -> Iterator[LocalStack]:
    """The real stack on loopback with `users` generated users; logs in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-") as logs:
        sim = {"GRAPH_SIM_USERS": str(users), **(sim_env or {})}
        app = {"PROTECTED_USERS": "", "ALLOW_ALL_USERS": "true", "BULK_APPROVAL_THRESHOLD": "0", **(settings or {})}
        with LocalStack(sim_env=sim, settings=app, log_dir=Path(logs)) as stack:
            yield stack


def clients(stack: LocalStack) -> tuple[httpx.Client, httpx.Client]:
    return httpx.Client(base_url=stack.base_url, timeout=120), httpx.Client(base_url=stack.sim_url, timeout=120)


def epoch(stamp: str) -> float:
    """The simulator's request-log timestamp as time.time()."""
    return datetime.fromisoformat(stamp).timestamp()


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a process, in MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(status[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def devhost_invocations(stack: LocalStack, function: str) -> int:
    """How many times the dev host ran a function (its 'Executed' log lines)."""
    marker = f"Executed 'Functions.{function}'"
    assert stack.devhost is not None
    with stack.devhost.log_path.open(errors="replace") as log:
        return sum(marker in line for line in log)


def start_all_users_job(api: httpx.Client) -> str:
    response = api.post("/api/signouts", json=ALL_USERS)
    if response.status_code != 202:
        raise SystemExit(f"bulk job refused: {response.status_code} {response.text}")
    return response.headers["Location"]


def wait_job(
    api: httpx.Client,
    url: str,
    timeout: float,
    until: Callable[[dict[str, Any]], bool] | None = None,
    every: float = 0.5,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll the job until `until(job)` (default: finished); returns the job report."""
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(url).json()
        if on_poll:
            on_poll(job)
        if (until or (lambda j: j["state"] == "finished"))(job):
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job not done after {timeout:.0f}s: {job}")
        time.sleep(every)


def graph_requests(sim: httpx.Client, since: int = 0) -> list[dict[str, Any]]:
    return sim.get("/_sim/requests", params={"since": since}).json()["requests"]


def is_revoke(entry: dict[str, Any]) -> bool:
    return entry["method"] == "POST" and entry["path"].endswith("/revokeSignInSessions")


def graph_token(stack: LocalStack) -> str:
    """A token from the local managed-identity endpoint, as the app gets it."""
    response = httpx.get(
        f"{stack.identity_url}/msi/token",
        headers={"X-IDENTITY-HEADER": stack.identity_header},
        params={"api-version": "2019-08-01", "resource": stack.sim_url},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _busy_ticks() -> int:
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> dict[int, tuple[str, int]]:
    """This process and its descendants (the stack's services): pid -> (service, CPU ticks)."""
    parents, found = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        service = next(
            (name for name in ("devhost", "graph_sim", "identity_endpoint", "azurite") if name in command), "benchmark"
        )
        found[pid] = (service, sum(map(int, fields[11:15])))  # utime stime cutime cstime
    own, me = {}, os.getpid()
    for pid, usage in found.items():
        walk = pid
        while walk not in (0, 1, me) and walk in parents:
            walk = parents[walk]
        if walk == me:
            own[pid] = usage
    return own


class MachineLoad:
    """Load averages, CPU used by each of the stack's services, and by processes outside this benchmark."""

    def __init__(self) -> None:
        self.load_before = os.getloadavg()
        self.started, self.busy, self.own = time.monotonic(), _busy_ticks(), _own_ticks()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per service since the start (services that exited are not counted)."""
        totals: dict[str, float] = {}
        for pid, (service, ticks) in _own_ticks().items():
            totals[service] = totals.get(service, 0.0) + (ticks - self.own.get(pid, ("", 0))[1]) / _TICK
        return totals

    def note(self, services: dict[str, float] | None = None) -> str:
        """`services`: a cpu_seconds() taken while the stack was still running (for the breakdown)."""
        elapsed = time.monotonic() - self.started
        own = sum(self.cpu_seconds().values())  # stopped services count in this process's cutime
        others = max(0.0, (_busy_ticks() - self.busy) / _TICK - own) / elapsed
        before, after = (" / ".join(f"{x:.2f}" for x in load) for load in (self.load_before, os.getloadavg()))
        verdict = (
            "the machine was shared with other work during the run: figures are pessimistic"
            if others > 0.2
            else "no significant other load during the run"
        )
        cpu = ", ".join(
            f"{name} {seconds:.0f} s" for name, seconds in sorted((services or {}).items(), key=lambda item: -item[1])
        )
        return (
            f"CPU seconds used by this run's processes while the stack ran: {cpu}; wall time {elapsed:.0f} s\n"
            if services
            else ""
        ) + (
            f"load average (1/5/15 min) before {before}, after {after}; processes outside this benchmark used "
            f"{others:.2f} of {os.cpu_count()} cores on average: {verdict}"
        )


class RequestTail:
    """Follows the simulator's request log; entries still in flight (no status yet) are read again."""

    def __init__(self, sim: httpx.Client) -> None:
        self.sim, self.since = sim, 0
        self.entries: dict[int, dict[str, Any]] = {}

    def poll(self) -> list[dict[str, Any]]:
        for entry in graph_requests(self.sim, self.since):
            self.entries[entry["seq"]] = entry
        pending = [seq for seq, entry in self.entries.items() if entry["status"] is None]
        self.since = min(pending) - 1 if pending else max(self.entries, default=0)
        return list(self.entries.values())
