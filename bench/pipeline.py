"""Pipeline benchmark (issue 2): throughput and single-request latency on the Graph simulator.

    .venv/bin/python -m bench.pipeline [--users 2000] [--singles 40] [--latency-ms 50]

Runs the real stack (Azurite, identity endpoint, Graph simulator with fixed latency, dev
host running function_app.py) and prints a table:
- end-to-end revocations/s for N users submitted at once (POST accepted -> every task terminal),
  next to the ceiling the Graph latency allows at the host's queue concurrency;
- p50/p95 latency from "POST answered 202" to "Graph received the revoke call" for single
  requests on an otherwise idle system (the queue polling interval dominates this).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime
from pathlib import Path

import httpx

from tools.local_stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
GRAPH_CALLS_PER_TASK = 3  # resolve, revoke, read back


def queue_concurrency() -> int:
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    return int(queues["batchSize"]) + int(queues["newBatchThreshold"])


def wait_all_terminal(sim: httpx.Client, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.get("/_sim/stats").json().get("revocations", 0) >= expected:
            return
        time.sleep(0.05)
    raise SystemExit(f"only {sim.get('/_sim/stats').json()} after {timeout}s")


def throughput(api: httpx.Client, sim: httpx.Client, users: int) -> float:
    names = [f"user{i:06d}@contoso.com" for i in range(users)]
    before = sim.get("/_sim/stats").json().get("revocations", 0)
    started = time.monotonic()
    for chunk in range(0, users, 1000):
        response = api.post("/api/signouts", json={"users": names[chunk : chunk + 1000], "description": "bench"})
        response.raise_for_status()
    wait_all_terminal(sim, before + users, timeout=600)
    return users / (time.monotonic() - started)


def single_latencies(api: httpx.Client, sim: httpx.Client, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        time.sleep(2.0)  # idle: the host's poller has backed off to maxPollingInterval
        response = api.post("/api/signouts", json={"user": f"user{i:06d}@contoso.com"})
        accepted = time.time()
        task_id = response.json()["tasks"][0]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            calls = [
                r
                for r in sim.get("/_sim/requests").json()["requests"]
                if r["method"] == "POST" and r.get("client-request-id") == task_id
            ]
            if calls:
                revoked = datetime.fromisoformat(calls[0]["timestamp"]).timestamp()
                latencies.append(revoked - accepted)
                break
            time.sleep(0.05)
        sim.delete("/_sim/requests")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--singles", type=int, default=40)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    sim_env = {"GRAPH_SIM_LATENCY_MS": str(args.latency_ms), "GRAPH_SIM_USERS": str(args.users)}
    with (
        LocalStack(sim_env=sim_env, settings={"PROTECTED_USERS": ""}) as stack,
        httpx.Client(base_url=stack.base_url, timeout=120) as api,
        httpx.Client(base_url=stack.sim_url, timeout=30) as sim,
    ):
        latencies = single_latencies(api, sim, args.singles)
        rate = throughput(api, sim, args.users)
    ceiling = queue_concurrency() / (GRAPH_CALLS_PER_TASK * args.latency_ms / 1000)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, 1 dev host process")
    print("| measure | value |\n|---|---|")
    print(f"| revocations/s, {args.users} users, Graph latency {args.latency_ms} ms | {rate:.1f} |")
    print(
        f"| ceiling set by Graph latency at {queue_concurrency()} concurrent tasks x {GRAPH_CALLS_PER_TASK} calls | {ceiling:.1f} |"
    )
    print(f"| share of that ceiling reached | {rate / ceiling:.0%} |")
    print(f"| single request, POST accepted -> Graph revoke call, p50 ({len(latencies)} runs) | {p50 * 1000:.0f} ms |")
    print(f"| single request, POST accepted -> Graph revoke call, p95 | {p95 * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
