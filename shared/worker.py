"""Queue triggers: decode, call one use-case function. Retries belong to the queue runtime."""

from __future__ import annotations

import azure.functions as func

from shared.graph import warm_up
from shared.retention import apply_retention
from shared.runtime import runtime
from shared.signout import bulk_lane, process_message, process_poison
from shared.storage import CONNECTION

bp = func.Blueprint()
warm_up()


@bp.queue_trigger(arg_name="msg", queue_name="%SIGNOUT_QUEUE_NAME%", connection=CONNECTION)
async def signout_worker(msg: func.QueueMessage) -> None:
    await process_message(runtime(), msg.get_body(), msg.id or "")


@bp.queue_trigger(arg_name="msg", queue_name="%SIGNOUT_QUEUE_NAME%-poison", connection=CONNECTION)
async def signout_poison(msg: func.QueueMessage) -> None:
    await process_poison(runtime(), msg.get_body(), msg.id or "")


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_QUEUE_NAME%", connection=CONNECTION)
async def bulk_worker(msg: func.QueueMessage) -> None:
    """Bulk jobs' per-user tasks, on a queue of their own so that an alert-driven sign-out never
    waits behind them."""
    rt = runtime()
    await process_message(rt, msg.get_body(), msg.id or "", bulk_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_QUEUE_NAME%-poison", connection=CONNECTION)
async def bulk_poison(msg: func.QueueMessage) -> None:
    await process_poison(runtime(), msg.get_body(), msg.id or "")


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_PAGE_QUEUE_NAME%", connection=CONNECTION)
async def bulk_pages(msg: func.QueueMessage) -> None:
    """Bulk jobs' enumeration, one Graph page per message, apart from the tasks it produces so
    that the next page never waits behind 999 of them."""
    rt = runtime()
    await process_message(rt, msg.get_body(), msg.id or "", bulk_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_PAGE_QUEUE_NAME%-poison", connection=CONNECTION)
async def bulk_pages_poison(msg: func.QueueMessage) -> None:
    await process_poison(runtime(), msg.get_body(), msg.id or "")


@bp.timer_trigger(arg_name="timer", schedule="0 17 3 * * *", run_on_startup=False)
async def retention(timer: func.TimerRequest) -> None:
    """Daily at 03:17 UTC: delete task records older than RETENTION_DAYS."""
    await apply_retention(runtime())
