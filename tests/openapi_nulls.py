"""shared/openapi.json's convention for null fields, applied alike by its unit and fuzz tests."""

from __future__ import annotations

from typing import Any


def without_nulls(value: Any) -> Any:
    """A null field is an absent one (Swagger 2.0 has no `nullable`): drop them, at every depth."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value
