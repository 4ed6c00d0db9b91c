"""Priority benchmark (issue 4): do alert-driven single sign-outs stay fast during a bulk sweep?

    .venv/bin/python -m bench.priority [--users 10000] [--singles 40] [--interval 1.5]
                                       [--quota 300/15 | --quota off] [--writes-per-second 19.4]

An allUsers job over GRAPH_SIM_USERS (+5 seed users) runs with the app's default pacing against a
simulator enforcing a time-scaled write quota (300/15 = 20/s, like 3,000/150 s) and 50 ms latency.
Once the simulator has received the first bulk revoke call, single sign-outs (POST /api/signouts with
one user, the alert path's queue and priority) are submitted every --interval seconds. Latency of
each: from "POST answered 202" to the simulator receiving that task's first successful revoke call
(client-request-id = task id in /_sim/requests; same clock). Bulk revocations counted are the
successful low-priority revoke calls between the first single's POST and the last single's revoke.
`--quota off --writes-per-second 1000` is the stress variant: an unpaced sweep that saturates the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import MachineLoad, RequestTail, clients, epoch, is_revoke, local_stack, machine, start_all_users_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.5, help="seconds between single sign-outs")
    parser.add_argument("--quota", default="300/15", help="simulator write quota (writes/seconds) or off")
    parser.add_argument("--writes-per-second", default="", help="GRAPH_WRITES_PER_SECOND (default: the app's, 19.4)")
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    load = MachineLoad()
    sim_env = {"GRAPH_SIM_LATENCY_MS": str(args.latency_ms), "GRAPH_SIM_WRITE_QUOTA": args.quota}
    settings = {"GRAPH_WRITES_PER_SECOND": args.writes_per_second} if args.writes_per_second else {}
    with local_stack(args.users, sim_env, settings) as stack:
        api, sim = clients(stack)
        tail = RequestTail(sim)
        start_all_users_job(api)
        while not any(is_revoke(e) for e in tail.poll()):  # the sweep is under way
            time.sleep(0.2)
        accepted: dict[str, float] = {}
        for i in range(args.singles):
            time.sleep(args.interval)
            response = api.post(
                "/api/signouts", json={"user": f"user{args.users - 1 - i:06d}@contoso.com", "description": "priority bench"}
            )
            accepted[response.json()["tasks"][0]["id"]] = time.time()
            tail.poll()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            revokes = [e for e in tail.poll() if is_revoke(e)]
            revoked = {
                e["client-request-id"]: epoch(e["timestamp"])
                for e in sorted(revokes, key=lambda e: -e["seq"])
                if e["client-request-id"] in accepted and e["status"] == 200
            }  # the first success wins
            if len(revoked) == len(accepted):
                break
            time.sleep(0.5)
        cpu = load.cpu_seconds()
    latencies = sorted(revoked[task] - accepted[task] for task in revoked)
    window = (min(accepted.values()), max(revoked.values()))
    singles = [e for e in revokes if e["client-request-id"] in accepted]
    bulk = [e for e in revokes if e["client-request-id"] not in accepted and window[0] <= epoch(e["timestamp"]) <= window[1]]
    bulk_ok = sum(e["status"] == 200 for e in bulk)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18]
    print(machine())
    print("| measure | value | target |\n|---|---|---|")
    print(f"| single sign-outs submitted / revoked within 60 s | {len(accepted)} / {len(revoked)} | all |")
    print(f"| POST accepted -> Graph revoke call, p50 | {statistics.median(latencies) * 1000:.0f} ms | |")
    print(f"| POST accepted -> Graph revoke call, **p95** | **{p95 * 1000:.0f} ms** | < 2000 ms |")
    print(f"| POST accepted -> Graph revoke call, max | {latencies[-1] * 1000:.0f} ms | |")
    print(
        f"| singles' revoke calls answered 429 / sent with x-ms-throttle-priority high | "
        f"{sum(e['status'] == 429 for e in singles)} / {sum(e['x-ms-throttle-priority'] == 'high' for e in singles)} of {len(singles)} | 0 / all |"
    )
    print(
        f"| bulk revocations during the measurement ({window[1] - window[0]:.0f} s) | {bulk_ok} = {bulk_ok / (window[1] - window[0]):.1f}/s "
        f"({sum(e['status'] == 429 for e in bulk)} bulk calls answered 429) | |"
    )
    print(
        f"\n{args.users} users in the sweep, simulator quota {args.quota}, Graph latency {args.latency_ms} ms, "
        f"GRAPH_WRITES_PER_SECOND {args.writes_per_second or 'default (19.4)'}, a single every {args.interval:g} s"
    )
    print(load.note(cpu))


if __name__ == "__main__":
    main()
