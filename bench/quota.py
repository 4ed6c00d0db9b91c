"""Quota adherence benchmark (issue 4): does a bulk job use Graph's write quota fully without exceeding it?

    .venv/bin/python -m bench.quota [--users 3000] [--quota 300/15] [--latency-ms 50]

The Graph simulator enforces a time-scaled write quota (default 300 writes per 15 s: 20/s like the real
3,000 per 150 s, with a 10x smaller bucket so that its initial burst cannot carry the run); the app
keeps its default GRAPH_WRITES_PER_SECOND. One allUsers job signs out every user (GRAPH_SIM_USERS plus
the simulator's 5 seed users). After the job finished, the simulator's request log gives:
- achieved rate: successful revoke calls per second between the first and the last one (the bucket
  starts full but the pacer never exceeds its rate, so there is no initial burst to exclude), divided
  by the quota's rate; the same from the last enumeration page on (enumeration competes with the
  first tasks for the one dev host process); and the rate in each quota-length window;
- the share of revoke calls answered 429; failed tasks (job counts); users revoked more than once
  (successful revoke calls per user path) and users never revoked.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from bench.common import (
    SEED_USERS,
    MachineLoad,
    clients,
    devhost_invocations,
    epoch,
    graph_requests,
    is_revoke,
    local_stack,
    machine,
    start_all_users_job,
    wait_job,
)


def window_rates(stamps: list[float], window: float) -> list[float]:
    """Revocations per second in consecutive windows of `window` seconds from the first one."""
    first, last = stamps[0], stamps[-1]
    counts = Counter(int((t - first) // window) for t in stamps)
    return [counts[i] / window for i in range(int((last - first) // window))]  # whole windows only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--quota", default="300/15", help="simulator write quota, writes/seconds")
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    writes, seconds = (float(x) for x in args.quota.split("/"))
    quota_rate, expected = writes / seconds, args.users + SEED_USERS
    load = MachineLoad()
    sim_env = {"GRAPH_SIM_WRITE_QUOTA": args.quota, "GRAPH_SIM_LATENCY_MS": str(args.latency_ms)}
    with local_stack(args.users, sim_env) as stack:
        api, sim = clients(stack)
        started = time.time()
        job = wait_job(api, start_all_users_job(api), timeout=expected / quota_rate * 3 + 120, every=1.0)
        finished = time.time()
        log = graph_requests(sim)
        invocations = devhost_invocations(stack, "bulk_worker")
        cpu = load.cpu_seconds()
    revokes = [e for e in log if is_revoke(e)]
    ok = sorted(epoch(e["timestamp"]) for e in revokes if e["status"] == 200)
    throttled = sum(e["status"] == 429 for e in revokes)
    per_user = Counter(e["path"].lower() for e in revokes if e["status"] == 200)
    rate = (len(ok) - 1) / (ok[-1] - ok[0])
    last_page = max(epoch(e["timestamp"]) for e in log if e["method"] == "GET" and e["path"].endswith("/users"))
    after = [t for t in ok if t >= last_page]
    after_rate = (len(after) - 1) / (after[-1] - after[0])
    windows = window_rates(ok, seconds)
    counts = job["counts"]
    print(machine())
    print("| measure | value | target |\n|---|---|---|")
    print(f"| users in the job (discovered) | {counts['discovered']} (expected {expected}) | |")
    print(f"| job run time, POST -> finished | {finished - started:.0f} s | |")
    print(f"| successful revocations, first -> last | {len(ok)} in {ok[-1] - ok[0]:.1f} s | |")
    print(f"| achieved revoke rate / quota rate ({quota_rate:g}/s) | {rate:.2f}/s = **{rate / quota_rate:.3f}** | >= 0.95 |")
    print(
        f"| same, from the last enumeration page ({last_page - ok[0]:.0f} s after the first revoke) to the last revoke | {after_rate:.2f}/s = {after_rate / quota_rate:.3f} | |"
    )
    if windows:
        print(
            f"| {seconds:g}-s windows: slowest / median rate / quota | {min(windows) / quota_rate:.3f} / {statistics.median(windows) / quota_rate:.3f} | |"
        )
    print(f"| revoke calls answered 429 | {throttled} of {len(revokes)} = **{throttled / len(revokes):.2%}** | <= 1% |")
    print(f"| failed tasks / skipped | **{counts['failed']}** / {counts['skipped']} (succeeded {counts['succeeded']}) | 0 |")
    print(f"| users revoked more than once | **{sum(c > 1 for c in per_user.values())}** | 0 |")
    print(f"| users never revoked | {expected - len(per_user)} | 0 |")
    print(
        f"| bulk_worker invocations (pages + tasks + pacing deferrals) | {invocations} = {invocations / expected:.1f} per user | |"
    )
    print(
        f"\nsimulator quota {args.quota} (token bucket, starts full), Graph latency {args.latency_ms} ms per call, "
        "GRAPH_WRITES_PER_SECOND default (19.4)"
    )
    print(f"{seconds:g}-s windows from the first revoke, rate / quota: {' '.join(f'{w / quota_rate:.2f}' for w in windows)}")
    print(load.note(cpu))


if __name__ == "__main__":
    main()
