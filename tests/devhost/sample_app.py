"""A small v2-model Functions app used only by tests/devhost to exercise tools/devhost.py.

Queue and timer functions report each invocation to the queue named by SAMPLE_RESULTS, so tests
can observe them from outside the devhost process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import azure.functions as func
from azure.storage.queue import QueueClient as SyncQueueClient
from azure.storage.queue.aio import QueueClient

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS
_results: QueueClient | None = None  # created once per process, inside the loop that uses it


async def record(kind: str, **fields: object) -> None:
    global _results  # noqa: PLW0603 - one client per worker process
    if _results is None:
        _results = QueueClient.from_connection_string(
            os.environ["AzureWebJobsStorage"],  # noqa: SIM112 - the host's name
            os.environ["SAMPLE_RESULTS"],
        )
    await _results.send_message(json.dumps({"kind": kind, "at": time.time(), **fields}))


def echo(req: func.HttpRequest, function: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {
                "function": function,
                "method": req.method,
                "url": req.url,
                "route": dict(req.route_params),
                "params": dict(req.params),
                "body": req.get_body().decode(),
                "header": req.headers.get("x-sample"),
            }
        ),
        mimetype="application/json",
    )


@app.route(route="items/{id:int}/{name?}", methods=["GET"], auth_level=ANONYMOUS)
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "get_item")


@app.route(route="items/{id:int}", methods=["PUT", "POST"])  # the app's default: function level
async def put_item(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "put_item")


@app.route(route="users/{name:alpha}", auth_level=ANONYMOUS)
def user_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "user_by_name")


@app.route(route="users/{uid:guid}", auth_level=ANONYMOUS)
def user_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "user_by_id")


@app.route(route="users/me", auth_level=ANONYMOUS)  # declared last: a literal still wins
def user_me(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "user_me")


@app.route(route="files/{*path}", auth_level=ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return echo(req, "files")


@app.function_name(name="health")
@app.route(auth_level=ANONYMOUS)  # no route: defaults to the function name
def health_check(req: func.HttpRequest) -> str:
    return "ok"


@app.route(route="boom", auth_level=ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail")


@app.route(route="nothing", auth_level=ANONYMOUS)
def nothing(req: func.HttpRequest) -> None:
    return None


@app.route(route="created", methods=["POST"], auth_level=ANONYMOUS)
def created(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("made", status_code=201, headers={"X-Sample": "yes", "Set-Cookie": "a=1"})


@bp.route(route="bp/hello", auth_level=ANONYMOUS)
async def bp_hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"function": context.function_name, "invocation_id": context.invocation_id}))


app.register_functions(bp)


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
async def work(msg: func.QueueMessage) -> None:
    """'fail' always fails, 'fail-twice' fails on its first two deliveries, 'sleep:N' sleeps N
    seconds on its first delivery."""
    text = msg.get_body().decode()
    await record("work", body=text, dequeue_count=msg.dequeue_count, id=msg.id)
    if text == "fail" or (text == "fail-twice" and msg.dequeue_count <= 2):
        raise RuntimeError(f"failing on purpose: {text}")
    if text.startswith("sleep:") and msg.dequeue_count == 1:
        await asyncio.sleep(float(text.removeprefix("sleep:")))
    await record("done", body=text, dequeue_count=msg.dequeue_count)


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%-poison", connection="AzureWebJobsStorage")
def poison(msg: func.QueueMessage) -> None:  # sync on purpose: runs in the thread pool
    results = SyncQueueClient.from_connection_string(
        os.environ["AzureWebJobsStorage"],  # noqa: SIM112
        os.environ["SAMPLE_RESULTS"],
    )
    with results:
        results.send_message(json.dumps({"kind": "poison", "body": msg.get_body().decode(), "dequeue_count": msg.dequeue_count}))


@app.timer_trigger(
    arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=os.environ.get("SAMPLE_TIMER_ON_STARTUP") == "1"
)
async def tick(timer: func.TimerRequest) -> None:
    await record("timer", past_due=timer.past_due)
