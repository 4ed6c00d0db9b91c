"""Queue and timer triggers: decode, call one use-case function. Each queue takes only its own
message kinds (its lane); retries belong to the queue runtime."""

from __future__ import annotations

import azure.functions as func

from shared.runtime import runtime, warm_up
from shared.settings import STORAGE_CONNECTION
from shared.usecases.process_task import bulk_lane, page_lane, process_message, process_poison, single_lane
from shared.usecases.retention import apply_retention
from shared.usecases.sweeper import sweep

bp = func.Blueprint()
warm_up()  # msgraph-sdk's lazily loaded models, at worker start-up: the first sign-out is not late


@bp.queue_trigger(arg_name="msg", queue_name="%SIGNOUT_QUEUE_NAME%", connection=STORAGE_CONNECTION)
async def signout_worker(msg: func.QueueMessage) -> None:
    """Single and alert-driven tasks, direct requests (Logic Apps) and callback deliveries."""
    rt = runtime()
    await process_message(rt, msg.get_body(), msg.id or "", single_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%SIGNOUT_QUEUE_NAME%-poison", connection=STORAGE_CONNECTION)
async def signout_poison(msg: func.QueueMessage) -> None:
    rt = runtime()
    await process_poison(rt, msg.get_body(), msg.id or "", single_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_QUEUE_NAME%", connection=STORAGE_CONNECTION)
async def bulk_worker(msg: func.QueueMessage) -> None:
    """Bulk jobs' per-user tasks, on a queue of their own so that an alert-driven sign-out never
    waits behind them."""
    rt = runtime()
    await process_message(rt, msg.get_body(), msg.id or "", bulk_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_QUEUE_NAME%-poison", connection=STORAGE_CONNECTION)
async def bulk_poison(msg: func.QueueMessage) -> None:
    rt = runtime()
    await process_poison(rt, msg.get_body(), msg.id or "", bulk_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_PAGE_QUEUE_NAME%", connection=STORAGE_CONNECTION)
async def bulk_pages(msg: func.QueueMessage) -> None:
    """Bulk jobs' enumeration, one Graph page per message, apart from the tasks it produces so
    that the next page never waits behind 999 of them."""
    rt = runtime()
    await process_message(rt, msg.get_body(), msg.id or "", page_lane(rt))


@bp.queue_trigger(arg_name="msg", queue_name="%BULK_PAGE_QUEUE_NAME%-poison", connection=STORAGE_CONNECTION)
async def bulk_pages_poison(msg: func.QueueMessage) -> None:
    rt = runtime()
    await process_poison(rt, msg.get_body(), msg.id or "", page_lane(rt))


@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
async def sweeper(timer: func.TimerRequest) -> None:
    """Every minute: re-drive tasks whose attempt outlived its deadline or whose message is lost."""
    await sweep(runtime())


@bp.timer_trigger(arg_name="timer", schedule="0 17 * * * *", run_on_startup=False)
async def retention(timer: func.TimerRequest) -> None:
    """Hourly at :17: delete what is older than RETENTION_DAYS, in bounded batches."""
    await apply_retention(runtime())
