"""Logic Apps HTTP Webhook callbacks of a finished task: its own and those of the requests that
joined it, each POSTed once per callback message and retried by queueing that message again.

Delivery runs from a queue message of its own (written when the task ends, and again by the
sweeper after a crash), so no callback is lost and no worker sleeps between tries. Each
target's outcome is recorded: `{state: pending|delivered|failed, attempts, lastError}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.domain.messages import CallbackMessage, token_matches
from shared.domain.tasks import TaskRecord, utcnow
from shared.settings import Settings
from shared.usecases.ports import CallbackSender, TaskStore, WorkQueue

log = logging.getLogger("signout.callbacks")

ATTEMPTS = 4
BACKOFF_SECONDS = (1.0, 2.0, 4.0)  # before the 2nd, 3rd and 4th try
MAX_JOINED = 1000  # joined requests whose callbacks are delivered (the count's own bound)


class CallbackDeps(Protocol):
    """The ports callback delivery uses."""

    @property
    def settings(self) -> Settings: ...
    @property
    def tasks(self) -> TaskStore: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def callbacks(self) -> CallbackSender: ...


@dataclass(frozen=True)
class Target:
    url: str
    state: dict[str, Any]
    join_row: str | None = None  # None: the task's own callback
    joined: dict[str, Any] | None = None


def _final(state: dict[str, Any]) -> bool:
    return state.get("state") in ("delivered", "failed")


async def _targets(rt: CallbackDeps, record: TaskRecord) -> list[Target]:
    targets = [Target(record.callback_url, record.callback or {})] if record.callback_url else []
    joins, _ = await rt.tasks.joins(record.id, MAX_JOINED)
    for row, joined in joins:
        if joined.get("callbackUrl"):
            targets.append(Target(joined["callbackUrl"], joined.get("callback") or {}, row, joined))
    return [target for target in targets if not _final(target.state)]


async def callbacks_pending(rt: CallbackDeps, record: TaskRecord) -> bool:
    return bool(await _targets(rt, record))


async def deliver_callbacks(rt: CallbackDeps, message: CallbackMessage) -> None:
    record = await rt.tasks.get(message.task_id)
    if record is None or not record.status.is_terminal or not token_matches(record.token, message.token):
        log.error("dropped callback message for task %s: no finished task with that token", message.task_id)
        return
    body = record.to_api()
    retry_after = 0.0
    for target in await _targets(rt, record):
        state = await _post_once(rt.callbacks, target.url, body, target.state)
        record = await _record(rt, record, target, state)
        if state["state"] == "pending":
            retry_after = max(retry_after, BACKOFF_SECONDS[min(state["attempts"], len(BACKOFF_SECONDS)) - 1])
        log.info("callback for task %s: %s after %d attempt(s)", record.id, state["state"], state["attempts"])
    if retry_after:
        await rt.queue.put(rt.settings.signout_queue, message.to_text(), retry_after)


async def _post_once(sender: CallbackSender, url: str, body: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    attempts = int(previous.get("attempts", 0)) + 1
    delivered, retriable, error, status = await sender.post(url, body)
    if delivered:
        return {"state": "delivered", "attempts": attempts, "httpStatus": status}
    return {"state": "pending" if retriable and attempts < ATTEMPTS else "failed", "attempts": attempts, "lastError": error}


async def _record(rt: CallbackDeps, record: TaskRecord, target: Target, state: dict[str, Any]) -> TaskRecord:
    if target.join_row is None:
        return await rt.tasks.save(record, replace(record, callback=state, updated_at=utcnow()))
    await rt.tasks.save_join(record.id, target.join_row, {**(target.joined or {}), "callback": state})
    return record
