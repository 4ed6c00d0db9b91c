"""What a store can answer besides a value: conditions the use cases decide on."""

from __future__ import annotations


class TaskExistsError(Exception):
    """A task with this id was already created (a replayed deterministic id)."""


class ConcurrentUpdateError(Exception):
    """The row changed since it was read (ETag mismatch): reload and decide again."""


class AlreadyCountedError(Exception):
    """A marker row of the batch exists (or its new counter shard was created meanwhile): count
    the markers one by one and check for each marker row."""
