"""Microsoft Sentinel alert: the playbook alert trigger's body, or a SecurityAlert row.

`Entities` is JSON text in the SecurityAlert table and a list in the trigger body; both are read.
The id is SystemAlertId (Sentinel's own, stable across redeliveries), else the originating
product's VendorOriginalId, else AlertLink.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.domain.alerts.common import Candidate, Parsed, field, or_else, required_id, title
from shared.domain.alerts.sentinel_entities import accounts, entity_list

KIND = "sentinel_alert"
_NAMES = ("AlertDisplayName", "AlertName", "DisplayName")
_NO_ACCOUNT = "the alert has no Account entity; map one (AadUserId, or Name and UPNSuffix) in the analytics rule"


def matches(payload: dict[str, Any]) -> bool:
    return field(payload, "SystemAlertId") is not None or (
        field(payload, "Entities") is not None and field(payload, *_NAMES) is not None
    )


def parse(payload: dict[str, Any]) -> Parsed:
    return Parsed(
        alert_id=required_id(payload, "/SystemAlertId", "SystemAlertId", "VendorOriginalId", "AlertLink"),
        name=title(field(payload, *_NAMES), "Microsoft Sentinel alert"),
        resolved=False,
        found=_found(field(payload, "Entities")),
    )


def _found(value: object) -> Iterator[Candidate]:
    entities, problem = entity_list(value)
    if problem:
        yield Candidate("Entities", reason=problem)
    else:
        yield from or_else(accounts(entities), Candidate("alert", reason=_NO_ACCOUNT))
