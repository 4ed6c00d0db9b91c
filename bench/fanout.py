"""Fan-out benchmark (issue 4): enumerate and enqueue a 100,000-user directory.

    .venv/bin/python -m bench.fanout [--users 100000]

An allUsers job over GRAPH_SIM_USERS (+5 seed users), pages of 999 (GRAPH_PAGE_SIZE default). The
tasks' own function is switched off with the host's app setting AzureWebJobs.bulk_worker.Disabled=true,
so the dev host process does nothing but the fan-out (in Azure, bulk_pages scales apart from
bulk_worker anyway) and every task message stays on the bulk queue; BULK_BACKLOG_PAGES=0 lets the
enumeration run ahead of workers that never come. Measured:
- time until the job has recorded every page (leaves "enumerating"), and until every task exists and
  is queued (the bulk queue's message count reaches the discovered count);
- dev host memory: VmRSS sampled at 10/50/100 % of the pages, and VmHWM (peak) at the end;
- duplicates: distinct task ids and users in the remediation log (one row per created task) against
  the discovered count, and the bulk queue's final message count (one per task: a duplicate enqueue
  shows).
"""

from __future__ import annotations

import argparse
import math
import time

from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from bench.common import (
    SEED_USERS,
    MachineLoad,
    clients,
    devhost_invocations,
    local_stack,
    machine,
    memory_mib,
    start_all_users_job,
    wait_job,
)

PAGE_SIZE = 999


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    total = args.users + SEED_USERS
    pages = math.ceil(total / PAGE_SIZE)
    load = MachineLoad()
    with local_stack(args.users, settings={"AzureWebJobs.bulk_worker.Disabled": "true", "BULK_BACKLOG_PAGES": "0"}) as stack:
        api, _ = clients(stack)
        assert stack.devhost and stack.devhost.process
        pid = stack.devhost.process.pid
        storage = stack.azurite.connection_string
        queue = QueueClient.from_connection_string(storage, stack.app_settings["BULK_QUEUE_NAME"])
        idle = memory_mib(pid)["VmRSS"]
        samples: dict[int, tuple[float, float]] = {}  # percent of pages -> (seconds, RSS MiB)
        started = time.monotonic()

        def sample(job: dict) -> None:
            percent = job["pagesEnumerated"] * 100 // pages
            for mark in (10, 50, 100):
                if percent >= mark and mark not in samples:
                    samples[mark] = (time.monotonic() - started, memory_mib(pid)["VmRSS"])

        url = start_all_users_job(api)
        job = wait_job(api, url, timeout=7200, until=lambda j: j["state"] != "enumerating", every=1.0, on_poll=sample)
        enumerated = time.monotonic() - started
        deadline = time.monotonic() + 3600
        while (queued := queue.get_queue_properties().approximate_message_count) < job["counts"]["discovered"]:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {queued} of {job['counts']['discovered']} tasks queued after an hour")
            time.sleep(1.0)
        all_queued = time.monotonic() - started
        time.sleep(5.0)  # a late duplicate would show now
        final_queue = queue.get_queue_properties().approximate_message_count
        peak = memory_mib(pid)
        cpu = load.cpu_seconds()
        job = api.get(url).json()
        table = TableClient.from_connection_string(storage, stack.app_settings["STATUS_TABLE_NAME"])
        rows = [(r["TaskId"], r["User"]) for r in table.query_entities("PartitionKey eq 'log'", select=["TaskId", "User"])]
        invocations = devhost_invocations(stack, "bulk_pages")
    discovered = job["counts"]["discovered"]
    print(machine())
    print("| measure | value |\n|---|---|")
    print(f"| users discovered / pages enumerated | {discovered} of {total} / {job['pagesEnumerated']} of {pages} |")
    print(
        f"| **job has every page** (state leaves enumerating) | **{enumerated:.0f} s** ({discovered / enumerated:.0f} users/s) |"
    )
    print(
        f"| **every task created and queued** (bulk queue holds {queued} messages) | **{all_queued:.0f} s** ({discovered / all_queued:.0f} users/s) |"
    )
    for mark, (at, rss) in sorted(samples.items()):
        print(f"| dev host VmRSS at {mark} % of pages ({at:.0f} s) | {rss:.0f} MiB |")
    print(
        f"| dev host VmRSS idle before the job / at the end / **peak (VmHWM)** | {idle:.0f} / {peak['VmRSS']:.0f} / **{peak['VmHWM']:.0f} MiB** |"
    )
    print(
        f"| remediation-log rows / distinct task ids / distinct users | {len(rows)} / {len({t for t, _ in rows})} / {len({u.lower() for _, u in rows})} |"
    )
    print(
        f"| **duplicate tasks** (rows - distinct ids) / missing (discovered - distinct ids) | **{len(rows) - len({t for t, _ in rows})}** / {discovered - len({t for t, _ in rows})} |"
    )
    print(f"| bulk queue messages at the end (one per task) | {final_queue} |")
    print(f"| bulk_pages invocations (one per page; more: redelivered pages) | {invocations} |")
    per_user = {name: cpu.get(name, 0.0) * 1000 / discovered for name in ("devhost", "azurite")}
    print(
        f"| CPU per user (enumeration, task record, index rows, message): dev host / Azurite | {per_user['devhost']:.0f} ms / {per_user['azurite']:.0f} ms |"
    )
    print("\nbulk_worker disabled (AzureWebJobs.bulk_worker.Disabled=true): the tasks stay queued")
    print(load.note(cpu))


if __name__ == "__main__":
    main()
