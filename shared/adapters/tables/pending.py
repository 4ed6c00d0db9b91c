"""Each user's pending slot: the task still `queued` for them, which new requests join."""

from __future__ import annotations

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.tables.keys import PENDING_ROW, index_row
from shared.adapters.tables.table import Table, etag_of
from shared.domain.identifiers import UserRef
from shared.domain.tasks import TaskRecord, utcnow
from shared.usecases.ports import Pending

_LOST_RACE = (404, 409, 412)  # the slot changed, appeared or went since it was read


class PendingSlots:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def get(self, user: UserRef) -> Pending | None:
        table = await self._table.client()
        try:
            entity = await table.get_entity(user.partition, PENDING_ROW)
        except ResourceNotFoundError:
            return None
        return Pending(entity["TaskId"], etag_of(entity.metadata), entity["ClaimedAt"])

    async def claim(self, user: UserRef, record: TaskRecord, previous: Pending | None) -> bool:
        """Point the user's pending slot at `record`, and add it to the user's log, atomically
        (one partition, one transaction); False if another request got there first."""
        table = await self._table.client()
        pointer = {"PartitionKey": user.partition, "RowKey": PENDING_ROW, "TaskId": record.id, "ClaimedAt": utcnow()}
        guarded = (
            {"mode": UpdateMode.REPLACE, "etag": previous.etag, "match_condition": MatchConditions.IfNotModified}
            if previous
            else {}
        )
        claim = ("create", pointer) if previous is None else ("update", pointer, guarded)
        try:
            await table.submit_transaction([claim, ("upsert", index_row(user.partition, record))])
        except TableTransactionError as exc:
            if exc.status_code in _LOST_RACE:
                return False
            raise
        return True

    async def release(self, user: UserRef, task_id: str) -> None:
        """Empty the user's pending slot if it still names `task_id` (its revocation starts now)."""
        table = await self._table.client()
        try:
            entity = await table.get_entity(user.partition, PENDING_ROW)
            if entity["TaskId"] == task_id:
                await table.delete_entity(
                    user.partition, PENDING_ROW, etag=etag_of(entity.metadata), match_condition=MatchConditions.IfNotModified
                )
        except (ResourceNotFoundError, ResourceModifiedError):
            pass  # gone already, or just claimed by a newer request: leave it to that one
