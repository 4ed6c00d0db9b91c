"""The only module that talks to Storage queues.

Messages are plain-text JSON (host.json `messageEncoding: none`), which is also what the
Logic Apps Azure Queues connector writes.
"""

from __future__ import annotations

from contextlib import suppress

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.usecases.ports import Receipt

MAX_VISIBILITY_SECONDS = 7 * 24 * 3600  # the service's limit


class StorageQueues:
    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._ready: set[str] = set()

    async def _queue(self, name: str) -> QueueClient:
        client = self._service.get_queue_client(name)
        if name not in self._ready:
            with suppress(ResourceExistsError):  # once per process; in Azure the template created it
                await client.create_queue()
            self._ready.add(name)
        return client

    async def put(self, queue: str, text: str, delay_seconds: float = 0) -> Receipt:
        """Enqueue `text`, invisible for `delay_seconds` (a scheduled retry or a pending accept)."""
        client = await self._queue(queue)
        delay = max(0, min(MAX_VISIBILITY_SECONDS, round(delay_seconds)))
        sent = await client.send_message(text, visibility_timeout=delay or None, time_to_live=-1)
        return Receipt(queue, sent.id, sent.pop_receipt or "")

    async def approximate_count(self, queue: str) -> int:
        """Messages in the queue, visible or not (Azure's approximate count)."""
        client = await self._queue(queue)
        return (await client.get_queue_properties()).approximate_message_count or 0

    async def release(self, receipt: Receipt) -> None:
        """Make a message visible now."""
        client = await self._queue(receipt.queue)
        await client.update_message(receipt.message_id, receipt.pop_receipt, visibility_timeout=0)

    async def withdraw(self, receipt: Receipt) -> None:
        client = await self._queue(receipt.queue)
        await client.delete_message(receipt.message_id, receipt.pop_receipt)

    async def ping(self, queue: str) -> None:
        client = await self._queue(queue)
        await client.get_queue_properties()

    async def close(self) -> None:
        await self._service.close()
