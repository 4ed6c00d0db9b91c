"""Who asked: the signed-in caller as App Service Authentication vouches for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    object_id: str | None
    app_id: str | None
    display_name: str | None
    roles: frozenset[str] = field(default_factory=frozenset, compare=False)

    def as_api(self) -> dict[str, str]:
        """`requestedBy` as the API shows and the store keeps it (roles are not recorded)."""
        fields = {"objectId": self.object_id, "appId": self.app_id, "displayName": self.display_name}
        return {key: value for key, value in fields.items() if value}

    @classmethod
    def from_api(cls, data: Any) -> Principal | None:
        if not isinstance(data, dict):
            return None
        return cls(data.get("objectId"), data.get("appId"), data.get("displayName"))
