"""The sweeper (a timer, every minute): no accepted task is left behind by a crash or a lost message.

Every unfinished task has an active row with the time by which it must have moved on. Past it:
- a task still queued (its message was lost, or its record landed after its message was gone)
  or in progress past its attempt deadline (its instance died) is queued again;
- a finished task whose finishing steps were interrupted gets its callbacks queued and leaves;
- an active row without a record (an intake that failed before writing it) is removed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.domain.tasks import utcnow
from shared.usecases.process_task import WorkerDeps, finish, redrive

log = logging.getLogger("signout.sweeper")

MAX_PER_RUN = 500
ORPHAN_AFTER = timedelta(minutes=10)  # an intake's record write has surely ended by then


async def sweep(rt: WorkerDeps) -> int:
    """Re-drive or close every overdue task; returns how many were handled."""
    now = utcnow()
    handled = 0
    for task_id, due in await rt.index.overdue(now, MAX_PER_RUN):
        record = await rt.tasks.get(task_id)
        if record is None:
            if now - due > ORPHAN_AFTER:
                await rt.index.clear_active(task_id)
            continue
        if record.status.is_terminal:
            await finish(rt, record)
        else:
            await redrive(rt, record)
        handled += 1
    if handled:
        log.warning("sweeper: %d overdue task(s) re-driven or closed", handled)
    return handled
