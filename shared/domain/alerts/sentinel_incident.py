"""Microsoft Sentinel incident: the playbook incident trigger's body, or what a playbook posts.

Accepted:
- the incident trigger body, `{"object": <incident resource>, "workspaceInfo": ..., ...}`;
- the incident resource itself (`{"id", "properties": {"title", "relatedEntities"}}`, as "Get incident" returns it);
- the output of the action "Entities - Get Accounts" with the incident beside it:
  `{"incidentArmId": ..., "title": ..., "Accounts": [...]}`. The id is required there too: a list of
  accounts alone cannot tell a redelivery from a new incident about the same people.

The id is the incident's ARM id (stable for the incident's life), else its name (GUID).
"""

from __future__ import annotations

from typing import Any

from shared.domain.alerts.common import Candidate, Parsed, field, items, or_else, required_id, title
from shared.domain.alerts.sentinel_entities import accounts

KIND = "sentinel_incident"
_DEFAULT_NAME = "Microsoft Sentinel incident"
_NO_ACCOUNT = Candidate("incident", reason="the incident has no Account entity")


def matches(payload: dict[str, Any]) -> bool:
    return _incident(payload) is not None or isinstance(field(payload, "Accounts"), list)


def parse(payload: dict[str, Any]) -> Parsed:
    incident = _incident(payload)
    if incident is None:  # "Entities - Get Accounts" output
        return Parsed(
            alert_id=required_id(payload, "/incidentArmId", "incidentArmId", "id", "SystemAlertId"),
            name=title(field(payload, "title", "AlertDisplayName"), _DEFAULT_NAME),
            resolved=False,
            found=or_else(accounts(items(field(payload, "Accounts")), all_accounts=True), _NO_ACCOUNT),
        )
    properties = field(incident, "properties")
    pointer = "/object/id" if incident is not payload else "/id"
    return Parsed(
        alert_id=required_id(incident, pointer, "id", "name"),
        name=title(field(properties, "title"), _DEFAULT_NAME),
        resolved=False,
        found=or_else(accounts(items(field(properties, "relatedEntities"))), _NO_ACCOUNT),
    )


def _incident(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The incident resource: the trigger's `object`, or the payload itself when it is one."""
    envelope = field(payload, "object")
    if isinstance(envelope, dict) and isinstance(field(envelope, "properties"), dict):
        return envelope
    properties = field(payload, "properties")
    return payload if isinstance(properties, dict) and field(properties, "relatedEntities") is not None else None
