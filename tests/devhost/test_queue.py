"""Queue and timer triggers in the devhost, against Azurite: the Storage extension's semantics."""

from __future__ import annotations

import base64
import itertools
import time

import httpx

from tests.integration.helpers import wait_until

from .conftest import Sample


def queue_length(client) -> int:
    return client.get_queue_properties().approximate_message_count


def kinds(*wanted: str):
    """Predicate: every (kind, body, dequeue_count) in `wanted` has been reported."""

    def seen(results):
        got = {f"{r['kind']}:{r.get('body')}:{r.get('dequeue_count')}" for r in results}
        return set(wanted) <= got

    return seen


def test_base64_message_is_delivered_and_deleted(sample) -> None:
    s: Sample = sample()  # messageEncoding defaults to base64
    s.send("héllo")
    results = s.results.wait(kinds("done:héllo:1"))
    work = s.results.of("work")
    assert [(r["body"], r["dequeue_count"]) for r in work] == [("héllo", 1)]
    wait_until(lambda: queue_length(s.queue) == 0, "the message deleted once the function returned")
    assert "Executed 'Functions.work' (Succeeded" in s.host.log and results


def test_none_encoding_passes_text_as_is(sample) -> None:
    s: Sample = sample(queues={"messageEncoding": "none"})
    text = base64.b64encode(b"looks like base64").decode()
    s.send(text)
    s.results.wait(kinds(f"done:{text}:1"))  # not decoded


def test_invalid_base64_goes_to_poison_without_invoking(sample) -> None:
    s: Sample = sample()
    s.send("not base64!", raw=True)
    wait_until(lambda: queue_length(s.queue) == 0 and queue_length(s.poison) == 1, "the message moved to the poison queue")
    assert "is not valid base64" in s.host.log
    assert "Executing 'Functions.work'" not in s.host.log


def test_failure_retries_after_visibility_timeout_then_succeeds(sample) -> None:
    s: Sample = sample(queues={"visibilityTimeout": "00:00:01", "maxDequeueCount": 5})
    s.send("fail-twice")
    s.results.wait(kinds("done:fail-twice:3"))
    work = s.results.of("work")
    assert [r["dequeue_count"] for r in work] == [1, 2, 3]
    assert all(b["at"] - a["at"] >= 0.9 for a, b in itertools.pairwise(work))  # visibilityTimeout
    assert not s.results.of("poison")


def test_poison_after_max_dequeue_count(sample) -> None:
    s: Sample = sample(queues={"visibilityTimeout": "00:00:00", "maxDequeueCount": 3})
    s.send("fail")
    s.results.wait(kinds("poison:fail:1"))  # the poison trigger is just another queue trigger
    assert [r["dequeue_count"] for r in s.results.of("work")] == [1, 2, 3]
    assert "Message has reached MaxDequeueCount of 3" in s.host.log


def test_lease_is_renewed_while_a_function_runs(sample) -> None:
    s: Sample = sample()  # lease 2 s, renewed every second; unrenewed, it would reappear at 2 s
    s.send("sleep:2.6")
    s.results.wait(kinds("done:sleep:2.6:1"))
    time.sleep(0.3)
    assert [r["dequeue_count"] for r in s.results.wait(lambda _: True) if r["kind"] == "work"] == [1]


def test_crash_mid_invocation_redelivers_after_the_lease(sample) -> None:
    s: Sample = sample()  # lease 2 s
    s.send("sleep:60")
    s.results.wait(kinds("work:sleep:60:1"))
    s.host.kill()  # SIGKILL: no cleanup, the message keeps its lease
    crashed_at = time.time()
    s.host.start()
    s.results.wait(kinds("done:sleep:60:2"))
    redelivered = s.results.of("work")[-1]
    # After the 2 s lease plus a restart, however slow; the host's default lease would hide it 600 s.
    assert redelivered["dequeue_count"] == 2 and redelivered["at"] - crashed_at < 120


def test_timer_trigger(sample) -> None:
    s: Sample = sample(env={"SAMPLE_SCHEDULE": "*/1 * * * * *", "SAMPLE_TIMER_ON_STARTUP": "1"})
    timers = s.results.wait(lambda r: len([x for x in r if x["kind"] == "timer"]) >= 3)
    assert all(t["past_due"] is False for t in timers)


def test_a_disabled_function_is_left_out_as_the_host_does(sample) -> None:
    s: Sample = sample(env={"AzureWebJobs.work.Disabled": "true", "AzureWebJobs.get_item.Disabled": "1"})
    s.queue.create_queue()  # no listener creates it
    s.send("parked")
    time.sleep(1.5)  # several polling intervals
    assert s.queue.get_queue_properties().approximate_message_count == 1  # nobody took it
    assert httpx.get(s.host.url + "/api/items/5").status_code == 404
    assert httpx.get(s.host.url + "/api/users/me").status_code == 200  # the others still run
    assert "Function 'work' is disabled" in s.host.log
