"""Running the local stand-ins (Graph simulator, identity endpoint) as loopback servers."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web


async def serve(app: web.Application, port: int, name: str, path: str = "") -> None:
    """Serve on 127.0.0.1 until SIGINT/SIGTERM, announcing the bound URL (useful with --port 0)."""
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"{name} listening on http://127.0.0.1:{runner.addresses[0][1]}{path}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(module: str, doc: str, settings_from_env: Callable[[], Any], build_app: Callable[[Any], web.Application],
        argv: list[str] | None, name: str, path: str = "") -> None:  # fmt: skip
    """The command line both servers share: `python -m tools.<module> --port PORT`."""
    parser = argparse.ArgumentParser(prog=f"python -m tools.{module}", description=doc.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env()
    except ValueError as exc:
        parser.exit(2, f"{module}: refusing to start: {exc}\n")
    asyncio.run(serve(build_app(settings), args.port, name, path))
