"""Pipeline ceiling benchmark (issue 4): how fast can one dev host process sign out a whole directory?

    .venv/bin/python -m bench.ceiling [--users 10000] [--latency-ms 50] [--naive-users 1000]

No write quota in the simulator, 50 ms latency per Graph call, GRAPH_WRITES_PER_SECOND=1000 (the
setting's maximum; the pacer never binds). One allUsers job signs out every user (GRAPH_SIM_USERS plus
the 5 seed users). Reported:
- revocations/s end to end (POST accepted -> job report "finished") and between the simulator's first
  and last successful revoke call;
- peak memory of the dev host process (VmHWM from /proc/<pid>/status; VmRSS when idle before the job);
- the same simulator, same token (from the local identity endpoint) and same users, signed out by a
  naive sequential loop (GET /v1.0/users/{upn}, then POST .../revokeSignInSessions, one user at a time,
  httpx) after the job: its rate is per-user constant, so by default it runs on the first
  --naive-users users only; --naive-users 0 runs it on every user.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx

from bench.common import (
    MAX_WRITES_PER_SECOND,
    SEED_USERS,
    MachineLoad,
    clients,
    epoch,
    graph_requests,
    graph_token,
    is_revoke,
    local_stack,
    machine,
    memory_mib,
    start_all_users_job,
    wait_job,
)

ROOT = Path(__file__).resolve().parent.parent
GRAPH_CALLS_PER_BULK_TASK = 2  # revoke and read back (the page already resolved the user)


def naive_loop(sim_url: str, token: str, users: int) -> float:
    """Sequential sign-out of user000000.. as a plain script would do it; returns revocations/s."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{sim_url}/v1.0", headers=headers, timeout=30) as graph:
        started = time.monotonic()
        for i in range(users):
            user = graph.get(f"/users/user{i:06d}@contoso.com", params={"$select": "id,userPrincipalName"})
            graph.post(f"/users/{user.raise_for_status().json()['id']}/revokeSignInSessions").raise_for_status()
        return users / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--naive-users", type=int, default=1000, help="users for the sequential loop (0: all)")
    args = parser.parse_args()
    total = args.users + SEED_USERS
    naive_users = min(args.naive_users or args.users, args.users)
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    concurrency = int(queues["batchSize"]) + int(queues["newBatchThreshold"])
    load = MachineLoad()
    settings = {"GRAPH_WRITES_PER_SECOND": MAX_WRITES_PER_SECOND}
    with local_stack(args.users, {"GRAPH_SIM_LATENCY_MS": str(args.latency_ms)}, settings) as stack:
        api, sim = clients(stack)
        assert stack.devhost and stack.devhost.process
        pid = stack.devhost.process.pid
        idle = memory_mib(pid)["VmRSS"]
        started = time.time()
        job = wait_job(api, start_all_users_job(api), timeout=3600, every=0.5)
        finished = time.time()
        peak = memory_mib(pid)["VmHWM"]
        cpu = load.cpu_seconds()  # the job's, before the naive loop
        ok = sorted(epoch(e["timestamp"]) for e in graph_requests(sim) if is_revoke(e) and e["status"] == 200)
        naive = naive_loop(stack.sim_url, graph_token(stack), naive_users)
    end_to_end = total / (finished - started)
    graph_rate = (len(ok) - 1) / (ok[-1] - ok[0])
    counts = job["counts"]
    print(machine())
    print("| measure | value |\n|---|---|")
    print(f"| users signed out by the job | {counts['succeeded']} of {counts['discovered']} (failed {counts['failed']}) |")
    print(f"| job run time, POST -> finished | {finished - started:.1f} s |")
    print(f"| **revocations/s, end to end** (POST -> job finished) | **{end_to_end:.1f}** |")
    print(f"| revocations/s, first -> last Graph revoke call | {graph_rate:.1f} |")
    print(
        f"| ceiling set by Graph latency: {concurrency} concurrent tasks x {GRAPH_CALLS_PER_BULK_TASK} calls x {args.latency_ms} ms | "
        f"{concurrency / (GRAPH_CALLS_PER_BULK_TASK * args.latency_ms / 1000):.0f} |"
    )
    print(f"| dev host RSS idle before the job / **peak (VmHWM)** | {idle:.0f} MiB / **{peak:.0f} MiB** |")
    per_task = {name: cpu.get(name, 0.0) * 1000 / total for name in ("devhost", "azurite")}
    print(f"| CPU per revocation: dev host / Azurite | {per_task['devhost']:.0f} ms / {per_task['azurite']:.0f} ms |")
    print(
        f"| CPU-bound ceiling of one dev host process on a free core (1 s / its CPU per revocation) | {1000 / per_task['devhost']:.0f} |"
    )
    print(f"| naive sequential loop (GET user + POST revoke), {naive_users} users | {naive:.1f} revocations/s |")
    print(f"| **pipeline / naive loop** | **{end_to_end / naive:.1f}x** (Graph-side rate: {graph_rate / naive:.1f}x) |")
    print(f"\nno write quota, Graph latency {args.latency_ms} ms per call, GRAPH_WRITES_PER_SECOND={MAX_WRITES_PER_SECOND}")
    print(load.note(cpu))


if __name__ == "__main__":
    main()
