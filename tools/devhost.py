"""Local dev host: runs the app's real registered functions with the Azure Functions host's
semantics (HTTP, Storage queue and timer triggers) against Azurite, where Core Tools can't run.

    .venv/bin/python -m tools.devhost --port 7071 [--app function_app:app] [--host-json host.json]

Configured by environment variables with the app-setting names used in Azure, plus DEVHOST_*
knobs: DEVHOST_FUNCTION_KEY (require keys on non-anonymous routes), DEVHOST_MESSAGE_LEASE_SECONDS
(queue message lease, 600 as in Azure), DEVHOST_HOST_JSON, DEVHOST_LOG_LEVEL (e.g. DEBUG: the
root logger's level, as the worker sets it); `AzureWebJobs.<function>.Disabled=true`
leaves a function out, as the host does. Prints `devhost ready on URL` once
serving. One event loop runs everything, as in the Python worker: async functions are awaited on
it, sync ones run in a thread pool.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import importlib
import inspect
import ipaddress
import json
import logging
import os
import random
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage  # the worker's subclass: carries dequeue_count etc.
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueMessage as StorageMessage
from azure.storage.queue.aio import QueueClient

log = logging.getLogger("devhost")
MAX_BODY = 100 * 1024 * 1024  # the host's request size limit
MIN_POLL = 0.1  # QueuePollingIntervals.Minimum
HTTP_REASON = "This function was programmatically called via the host APIs."
# Azure.Core's default retries, as the .NET host has (3, from 0.8 s), not Python storage's 15 s first wait.
STORAGE_RETRY = {"retry_total": 3, "initial_backoff": 0.8, "increment_base": 2, "random_jitter_range": 0.2}


class StartupError(Exception):
    """A configuration the real host would refuse (startup or indexing failure)."""


# --- configuration --------------------------------------------------------------------------


def setting(section: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """host.json keys are case-insensitive (it's .NET configuration)."""
    return next((v for k, v in section.items() if k.lower() == key.lower()), default)


def timespan(value: Any) -> float:
    """Seconds from a .NET TimeSpan '[d.]hh:mm:ss[.fffffff]', host.json's duration format."""
    m = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+)(?:\.(\d+))?", str(value).strip())
    if not m:
        raise StartupError(f"not a TimeSpan (hh:mm:ss[.fff]): {value!r}")
    days, h, mins, s, frac = m.groups()
    return int(days or 0) * 86400 + int(h) * 3600 + int(mins) * 60 + int(s) + float(f"0.{frac or 0}")


def resolve(value: str, env: Mapping[str, str]) -> str:
    """Replace %NAME% with app settings; a missing one fails indexing, as in the host."""

    def lookup(m: re.Match[str]) -> str:
        if m[1] not in env:
            raise StartupError(f"app setting '{m[1]}' (used in '{value}') is not set")
        return env[m[1]]

    return re.sub(r"%([^%]+)%", lookup, value)


def check_environment(env: Mapping[str, str]) -> None:
    """Refuse configurations where azure-identity would reach for the real metadata service."""
    if not env.get("LOCAL_DEV_CREDENTIAL"):
        endpoint, header = env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER")
        if not (endpoint and header):
            raise StartupError(
                "IDENTITY_ENDPOINT and IDENTITY_HEADER must point at a local identity endpoint "
                "(or set LOCAL_DEV_CREDENTIAL=1 to use developer credentials); otherwise "
                "ManagedIdentityCredential would probe 169.254.169.254"
            )
        if not _is_loopback(urlsplit(endpoint).hostname or ""):
            raise StartupError(f"IDENTITY_ENDPOINT must be on this machine (loopback), got {endpoint}")
    if not env.get("AzureWebJobsStorage"):
        raise StartupError("AzureWebJobsStorage is not set (e.g. Azurite's connection string)")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class QueueOptions:
    """host.json extensions.queues, with the Storage extension 5.x defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host: Mapping[str, Any]) -> QueueOptions:
        cfg = setting(setting(host, "extensions", {}), "queues", {})
        batch = int(setting(cfg, "batchSize", 16))
        opts = cls(
            batch,
            int(setting(cfg, "newBatchThreshold", batch // 2)),
            timespan(setting(cfg, "maxPollingInterval", "00:01:00")),
            timespan(setting(cfg, "visibilityTimeout", "00:00:00")),
            int(setting(cfg, "maxDequeueCount", 5)),
            str(setting(cfg, "messageEncoding", "base64")).lower(),
        )
        if not (
            1 <= opts.batch_size <= 32
            and opts.new_batch_threshold >= 0
            and opts.max_polling_interval >= MIN_POLL
            and opts.max_dequeue_count >= 1
            and opts.message_encoding in ("base64", "none")
        ):
            raise StartupError(f"invalid extensions.queues in host.json: {opts}")
        return opts


# --- invoking a function --------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What the Python worker passes to a parameter named `context`."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = None


func.Context.register(Context)


class Invoker:
    """Calls one user function the way the Python worker does, logging like the host."""

    def __init__(self, function: Any, executor: ThreadPoolExecutor) -> None:
        self.name: str = function.get_function_name()
        self.trigger = function.get_trigger()
        self.user = function.get_user_function()
        self.executor = executor
        self.directory = str(Path(inspect.getfile(self.user)).parent)
        params = inspect.signature(self.user).parameters
        self.wants_context = "context" in params
        self.returns = any(b.name == "$return" for b in function.get_bindings())
        extra = [
            f"{b.type} '{b.name}'"
            for b in function.get_bindings()
            if b is not self.trigger and not (b.type == "http" and b.name == "$return")
        ]
        unbound = set(params) - {self.trigger.name, "context"}
        if extra or unbound or self.trigger.name not in params:
            raise StartupError(
                f"function '{self.name}': the devhost binds only the trigger "
                f"'{self.trigger.name}' (and the HTTP $return); found bindings "
                f"{extra} and parameters {sorted(params)}"
            )

    async def __call__(self, arg: Any, reason: str, convert: Callable[[Any], Any] = lambda r: r) -> Any:
        invocation_id = str(uuid.uuid4())
        kwargs = {self.trigger.name: arg}
        if self.wants_context:
            kwargs["context"] = Context(invocation_id, self.name, self.directory)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", self.name, reason, invocation_id)
        start = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(self.user):
                result = convert(await self.user(**kwargs))
            else:
                call = functools.partial(self.user, **kwargs)
                result = convert(await asyncio.get_running_loop().run_in_executor(self.executor, call))
            if result is not None and not self.returns:  # the worker fails such invocations
                raise TypeError(f"function '{self.name}' without a $return binding returned a value")  # noqa: TRY301 - logged below like any failure
        except Exception:
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                self.name,
                invocation_id,
                (time.perf_counter() - start) * 1000,
            )
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            self.name,
            invocation_id,
            (time.perf_counter() - start) * 1000,
        )
        return result


# --- HTTP trigger -----------------------------------------------------------------------------

CONSTRAINTS = {
    "int": r"-?\d+",
    "alpha": r"[a-z]+",
    "guid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}",
}


@dataclass
class Route:
    """One HTTP function's route template compiled ASP.NET-style (literals case-insensitive)."""

    invoker: Invoker
    pattern: re.Pattern[str]
    names: list[str]
    defaults: dict[str, str]
    precedence: tuple[int, ...]
    methods: frozenset[str] | None
    anonymous: bool

    @classmethod
    def build(cls, invoker: Invoker, prefix: str, template: str, methods: Any, auth: Any) -> Route:
        regex, names, defaults, precedence = "", [], {}, []
        segments = [s for s in prefix.split("/") if s]
        for i, segment in enumerate(segments + [s for s in template.split("/") if s]):
            parts, pos, kind, optional = "", 0, 1, False
            for m in re.finditer(r"\{([^{}]+)\}", segment):
                spec = m[1]
                catch_all, spec = spec.startswith("*"), spec.lstrip("*")
                spec, has_default, default = spec.partition("=")
                optional = spec.endswith("?") or bool(has_default) or catch_all
                name, *constraints = spec.rstrip("?").split(":")
                known = [CONSTRAINTS[c.lower()] for c in constraints if c.lower() in CONSTRAINTS]
                pattern = ".*" if catch_all else f"(?:{known[0]})" if known else "[^/]+?"
                parts += re.escape(segment[pos : m.start()]) + f"(?P<p{len(names)}>{pattern})"
                names.append(name)
                if has_default:
                    defaults[name] = default
                pos, kind = m.end(), 5 if catch_all else 3 if constraints else 4
            parts += re.escape(segment[pos:])
            whole = parts.startswith("(?P<") and parts.endswith(")") and segment.count("{") == 1
            kind = kind if whole or kind == 1 else 2  # ASP.NET's inbound route precedence digits
            regex += f"(?:/{parts})?" if whole and optional else f"/{parts}"
            if i >= len(segments):
                precedence.append(kind)
        allowed = frozenset(str(m).upper() for m in methods) if methods else None
        return cls(
            invoker,
            re.compile(f"(?i){regex}/?"),
            names,
            defaults,
            tuple(precedence),
            allowed,
            str(auth or "function").lower() == "anonymous",
        )

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        values = {self.names[int(k[1:])]: unquote(v) for k, v in m.groupdict().items() if v}
        return {**self.defaults, **values}


def to_http_response(result: Any) -> web.Response:
    """Encode the function's return value like the worker's HttpResponseConverter."""
    if isinstance(result, str):
        return web.Response(text=result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"unable to encode outgoing TypedData: unsupported type for Python type {type(result).__name__!r}")
    headers = [(k, v) for k, v in result.headers.items() if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = result.mimetype
        headers.append(("Content-Type", f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype))
    return web.Response(status=result.status_code, headers=headers, body=result.get_body())


def _joined(values: Any) -> dict[str, str]:
    """Repeated headers/query keys arrive comma-joined, as the host's StringValues do."""
    return {k: ",".join(values.getall(k)) for k in values}


# --- queue trigger ------------------------------------------------------------------------------


class Backoff:
    """The Storage extension's RandomizedExponentialBackoffStrategy for empty polls."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum, self.current, self.exponent = minimum, maximum, 0.0, 0

    def next(self, found_messages: bool) -> float:
        if found_messages:
            self.current, self.exponent = self.minimum, 1
        elif self.current != self.maximum:
            interval = self.minimum
            if self.exponent > 0:
                interval += random.uniform(0.8, 1.2) * 2 ** (self.exponent - 1) * self.minimum  # noqa: S311 - jitter
            if interval < self.maximum:
                self.current, self.exponent = interval, self.exponent + 1
            else:
                self.current = self.maximum
        return self.current


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep unless `event` is set first; True if it was."""
    try:
        await asyncio.wait_for(event.wait(), max(seconds, 0))
    except TimeoutError:
        return False
    return True


class QueueListener:
    """One queue-triggered function: the Storage extension's QueueListener and QueueProcessor."""

    def __init__(
        self,
        invoker: Invoker,
        queue_name: str,
        connection_string: str,
        options: QueueOptions,
        lease: int,
        stopping: asyncio.Event,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", queue_name):
            raise StartupError(f"function '{invoker.name}': invalid queue name '{queue_name}'")
        self.invoker, self.options, self.lease, self.stopping = invoker, options, lease, stopping
        self.queue = QueueClient.from_connection_string(connection_string, queue_name, **STORAGE_RETRY)
        poison_name = f"{queue_name}-poison"
        # As the host: no poison queue for a poison queue, or when the name would be too long.
        self.poison = (
            None
            if queue_name.endswith("-poison") or len(poison_name) > 63
            else QueueClient.from_connection_string(connection_string, poison_name, **STORAGE_RETRY)
        )
        self.in_flight: set[asyncio.Task[None]] = set()

    async def ensure_queue(self) -> None:
        try:
            await self.queue.create_queue()
            log.info("Created queue '%s' (in Azure, the infrastructure creates it)", self.queue.queue_name)
        except ResourceExistsError:
            pass
        except AzureError as e:
            log.warning("Cannot create queue '%s': %s", self.queue.queue_name, e)

    async def run(self) -> None:
        backoff, found_since_delay = Backoff(MIN_POLL, self.options.max_polling_interval), False
        while not self.stopping.is_set():
            try:
                batch = [
                    m
                    async for m in self.queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=self.lease,
                    )
                ]
            except ResourceNotFoundError:
                await self.ensure_queue()
                batch = []
            except AzureError as e:  # storage outage: back off like an empty queue
                log.warning("Polling queue '%s' failed: %s", self.queue.queue_name, e)
                batch = []
            except Exception:  # never let a listener die silently
                log.exception("Polling queue '%s' failed", self.queue.queue_name)
                batch = []
            for message in batch:
                task = asyncio.create_task(self.process(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            if batch:  # poll again as soon as in-flight work drops to newBatchThreshold
                found_since_delay = True
                while len(self.in_flight) > self.options.new_batch_threshold:
                    await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
            else:
                await _wait(self.stopping, backoff.next(found_since_delay))
                found_since_delay = False
        if self.in_flight:
            await asyncio.wait(self.in_flight)

    async def process(self, message: StorageMessage) -> None:
        if message.dequeue_count > self.options.max_dequeue_count:
            return await self.to_poison(message, message.pop_receipt)
        body = self.decode(message.content)
        if body is None:
            log.warning("Message %s on '%s' is not valid base64 (messageEncoding is base64)", message.id, self.queue.queue_name)
            return await self.to_poison(message, message.pop_receipt)
        receipt = [message.pop_receipt]  # renewals change it; the final delete/update needs the latest
        done = asyncio.Event()
        renewer = asyncio.create_task(self.renew(message.id, receipt, done))
        arg = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            await self.invoker(arg, f"New queue message detected on '{self.queue.queue_name}'.")
            succeeded = True
        except Exception:
            succeeded = False
        finally:  # a cancelled (abandoned) invocation leaves the message to reappear after its lease
            done.set()
            await renewer
        try:
            if succeeded:
                await self.queue.delete_message(message.id, receipt[0])
            elif self.poison is None:
                pass  # as the host: stay invisible until the lease ends, no fast retry loop
            elif message.dequeue_count < self.options.max_dequeue_count:
                await self.queue.update_message(message.id, receipt[0], visibility_timeout=int(self.options.visibility_timeout))
            else:
                await self.to_poison(message, receipt[0])
        except AzureError as e:  # e.g. pop receipt mismatch: someone else owns the message now
            log.warning("Completing message %s on '%s' failed: %s", message.id, self.queue.queue_name, e)

    def decode(self, content: str) -> bytes | None:
        if self.options.message_encoding == "none":
            return content.encode()
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            return None

    async def renew(self, message_id: str, receipt: list[str], done: asyncio.Event) -> None:
        """Keep the message invisible while the function runs, renewing at half the lease."""
        while not await _wait(done, self.lease / 2):
            try:
                updated = await self.queue.update_message(message_id, receipt[0], visibility_timeout=self.lease)
                receipt[0] = updated.pop_receipt
            except AzureError as e:
                log.warning("Renewing the lease of message %s failed: %s", message_id, e)

    async def to_poison(self, message: StorageMessage, receipt: str) -> None:
        if self.poison is None:
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison.queue_name,
        )
        try:
            with contextlib.suppress(ResourceExistsError):
                await self.poison.create_queue()
            await self.poison.send_message(message.content)  # the original text, still encoded
            await self.queue.delete_message(message.id, receipt)
        except AzureError as e:  # the message reappears after its lease and is poisoned then
            log.warning("Moving message %s to '%s' failed: %s", message.id, self.poison.queue_name, e)

    async def close(self) -> None:
        for client in (self.queue, self.poison):
            if client is not None:
                await client.close()


# --- timer trigger ------------------------------------------------------------------------------

_CRON_NAMES = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])} | {
    n: i + 1 for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
}


class Cron:
    """NCRONTAB with seconds, 'sec min hour day month day-of-week', evaluated in UTC."""

    RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 6:
            raise StartupError(f"timer schedule '{expression}' is not a 6-field NCRONTAB expression")
        try:
            self.fields = [self._parse(f, lo, hi) for f, (lo, hi) in zip(fields, self.RANGES, strict=True)]
        except (ValueError, KeyError) as e:
            raise StartupError(f"invalid timer schedule '{expression}': {e}") from None
        if self.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise StartupError(f"timer schedule '{expression}' never fires")

    @staticmethod
    def _parse(field: str, lo: int, hi: int) -> frozenset[int]:
        def number(text: str) -> int:
            return _CRON_NAMES[text.lower()] if text.isalpha() else int(text)

        values: set[int] = set()
        for part in field.split(","):
            span, _, step = part.partition("/")
            if span == "*":
                first, last = lo, hi
            elif "-" in span:
                first, last = map(number, span.split("-"))
            else:
                first = number(span)
                last = hi if step else first
            if not lo <= first <= last <= hi:
                raise ValueError(f"'{part}' is outside {lo}-{hi}")
            values.update(range(first, last + 1, int(step or 1)))
        return frozenset(values)

    def next_after(self, after: datetime) -> datetime | None:
        seconds, minutes, hours, days, months, weekdays = self.fields
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(100_000):  # skips whole months/days/hours/minutes, so this is plenty
            if t.month not in months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif t.day not in days or (t.weekday() + 1) % 7 not in weekdays:
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None


# --- the host -----------------------------------------------------------------------------------


class DevHost:
    def __init__(self, app: func.FunctionApp, host_json: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.stopping = asyncio.Event()
        threads = int(env.get("PYTHON_THREADPOOL_THREAD_COUNT") or 0) or None
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="function")
        self.function_key = env.get("DEVHOST_FUNCTION_KEY") or None
        self.routes: list[Route] = []
        self.listeners: list[QueueListener] = []
        self.timers: list[tuple[Invoker, Cron, bool]] = []
        http = setting(setting(host_json, "extensions", {}), "http", {})
        prefix = setting(http, "routePrefix", "api")
        options = QueueOptions.from_host_json(host_json)
        lease = int(env.get("DEVHOST_MESSAGE_LEASE_SECONDS", 600))
        if lease < 1:
            raise StartupError("DEVHOST_MESSAGE_LEASE_SECONDS must be at least 1")
        for function in app.get_functions():  # builds and validates; only call it once
            invoker, trigger = Invoker(function, self.executor), function.get_trigger()
            if env.get(f"AzureWebJobs.{invoker.name}.Disabled", "").strip().lower() in ("true", "1"):
                log.info("Function '%s' is disabled (AzureWebJobs.%s.Disabled)", invoker.name, invoker.name)
                continue
            if trigger.type == "httpTrigger":
                self.routes.append(Route.build(invoker, prefix, trigger.route, trigger.methods, trigger.auth_level))
            elif trigger.type == "queueTrigger":
                self.listeners.append(
                    QueueListener(
                        invoker,
                        resolve(trigger.queue_name, env),
                        _connection_string(trigger.connection, env),
                        options,
                        lease,
                        self.stopping,
                    )
                )
            elif trigger.type == "timerTrigger":
                self.timers.append((invoker, Cron(resolve(trigger.schedule, env)), bool(trigger.run_on_startup)))
            else:
                raise StartupError(
                    f"function '{invoker.name}': {trigger.type} is not supported "
                    "by the devhost (http, queue and timer triggers are)"
                )
        self.routes.sort(key=lambda r: r.precedence)  # stable: declaration order breaks ties

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        for route in self.routes:
            params = route.match(path)
            # A known route with another method is a 404 too: that's what Azure answers.
            if params is not None and (route.methods is None or request.method in route.methods):
                break
        else:
            return web.Response(status=404)
        if not route.anonymous and self.function_key and not self._has_key(request):
            return web.Response(status=401)
        body = await request.read()  # aiohttp answers 413 past client_max_size
        req = func.HttpRequest(
            request.method,
            str(request.url),
            headers=_joined(request.headers),
            params=_joined(request.query),
            route_params=params,
            body=body,
        )
        try:
            return await route.invoker(req, HTTP_REASON, to_http_response)
        except Exception:  # logged by the invoker; the caller learns nothing, as in Azure
            return web.Response(status=500)

    def _has_key(self, request: web.Request) -> bool:
        assert self.function_key is not None
        given = request.query.get("code") or request.headers.get("x-functions-key") or ""
        return hmac.compare_digest(given.encode(), self.function_key.encode())

    async def run_timer(self, invoker: Invoker, cron: Cron, run_on_startup: bool) -> None:
        now = datetime.now(UTC)
        due = now if run_on_startup else cron.next_after(now)
        while due and not await _wait(self.stopping, (due - datetime.now(UTC)).total_seconds()):
            # The next occurrence is computed after the invocation, so runs never overlap; a failure
            # is logged by the invoker.
            with contextlib.suppress(Exception):
                await invoker(TimerRequest(past_due=False), f"Timer fired at {due.isoformat()}")
            due = cron.next_after(datetime.now(UTC))

    async def run(self, port: int, grace: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        web_app = web.Application(client_max_size=MAX_BODY)
        web_app.router.add_route("*", "/{path:.*}", self.handle)
        runner = web.AppRunner(web_app, access_log=None, handle_signals=False, shutdown_timeout=grace)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for listener in self.listeners:
            await listener.ensure_queue()
        workers = [asyncio.create_task(listener.run()) for listener in self.listeners]
        workers += [asyncio.create_task(self.run_timer(*timer)) for timer in self.timers]
        print(f"devhost ready on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await self.stopping.wait()
        log.info("Stopping: waiting up to %.0f s for in-flight invocations", grace)
        http_closed = asyncio.create_task(runner.cleanup())  # in-flight requests get `grace` too
        _, pending = (await asyncio.wait(workers, timeout=grace)) if workers else (set(), set())
        pending |= {task for listener in self.listeners for task in listener.in_flight}
        if pending:  # their messages reappear after the lease, as when an instance dies
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1)
        await http_closed
        for listener in self.listeners:
            await listener.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _connection_string(name: str | None, env: Mapping[str, str]) -> str:
    name = name or "AzureWebJobsStorage"
    value = env.get(name) or env.get(f"AzureWebJobs{name}")
    if not value:
        raise StartupError(
            f"connection setting '{name}' is not set (the devhost needs a "
            "connection string; identity-based connections are not supported)"
        )
    return value


def load_app(spec: str) -> func.FunctionApp:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


def load_host_json(path: str) -> dict[str, Any]:
    if not Path(path).exists():
        log.warning("%s not found: using the host's defaults", path)
        return {}
    return json.loads(Path(path).read_text())


async def serve(args: argparse.Namespace) -> None:
    host = DevHost(load_app(args.app), load_host_json(args.host_json), os.environ)
    await host.run(args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Azure Functions dev host")
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host-json", default=os.environ.get("DEVHOST_HOST_JSON", "host.json"))
    args = parser.parse_args(argv)
    # DEVHOST_LOG_LEVEL=DEBUG logs as the Python worker does: root at DEBUG, no logger quieted
    # but by the app itself (host.json's filters apply after that, in the host).
    level = logging.getLevelNamesMapping().get(os.environ.get("DEVHOST_LOG_LEVEL", "").strip().upper())
    logging.basicConfig(
        level=logging.INFO if level is None else level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level is None:
        logging.getLogger("azure").setLevel(logging.WARNING)  # per-request SDK logs drown the app's
    sys.path.insert(0, str(Path.cwd()))  # the app is imported from its root, as the worker does
    try:
        check_environment(os.environ)
        asyncio.run(serve(args))
    except StartupError as e:
        log.error("devhost cannot start: %s", e)
        return 2
    # Exit as a terminated worker does: without joining threads of abandoned sync invocations
    # or finalizing the app's long-lived clients.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
