"""Alerts that name the accounts to sign out: parse what Azure Monitor, Microsoft Sentinel and
Microsoft Defender XDR post, into the users found and the entities that could not be used.

Pure parsing, no I/O. Every identifier goes through `parse_user`; nothing is guessed. Any payload,
however malformed, either parses or raises `ProblemError(400)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.alerts import azure_monitor, defender_xdr, sentinel_alert, sentinel_incident
from shared.domain.alerts.azure_monitor import DEFAULT_USER_DIMENSIONS
from shared.domain.alerts.common import MAX_ENTITIES, Parsed, collect
from shared.domain.identifiers import UserRef
from shared.domain.problems import ProblemError, field_error

__all__ = ["DEFAULT_USER_DIMENSIONS", "MAX_ENTITIES", "AlertUsers", "parse_alert"]

EXPECTED_SHAPES = (
    "an Azure Monitor alert with the common alert schema (schemaId 'azureMonitorCommonAlertSchema'; "
    "enable the common schema on the action group), a Microsoft Sentinel alert (SystemAlertId, Entities), "
    "a Microsoft Sentinel incident (object.properties.relatedEntities, or Accounts with incidentArmId), "
    "or a Microsoft Defender XDR alert from Microsoft Graph (id, evidence; or value: [alerts])"
)


@dataclass(frozen=True)
class AlertUsers:
    kind: str  # "azure_monitor" | "sentinel_alert" | "sentinel_incident" | "defender_xdr"
    alert_id: str  # stable across redeliveries of the same alert or incident
    name: str  # alert rule or incident title, at most 1024 characters
    resolved: bool  # Azure Monitor `monitorCondition: Resolved`
    users: tuple[UserRef, ...]  # deduplicated by key, in order of first appearance
    unusable: tuple[dict[str, str], ...]  # {"entity": what was seen, "reason": why it was not used}
    sources: tuple[str, ...] = ()  # where each user came from, aligned with `users`, e.g. "activity log caller"
    # Set when the alert names no user because its only candidate is not a target (an activity log
    # caller the rule did not opt in): the reason and the fix. Nothing to queue, and nothing wrong.
    ignored: str | None = None


def parse_alert(payload: object, *, dimension_names: frozenset[str] | None = None) -> AlertUsers:
    """Detect the payload's kind and find its users. `dimension_names`: Azure Monitor dimension and
    custom property names that hold a user (case-insensitive), replacing DEFAULT_USER_DIMENSIONS."""
    names = DEFAULT_USER_DIMENSIONS if dimension_names is None else dimension_names
    kind, parsed = _parse(payload, names)
    found = collect(parsed.found)
    ignored = parsed.ignored if not (found.users or found.unusable) else None  # a named user that failed is a 422
    return AlertUsers(kind, parsed.alert_id, parsed.name, parsed.resolved, found.users, found.unusable, found.sources, ignored)


def _parse(payload: object, dimension_names: frozenset[str]) -> tuple[str, Parsed]:
    if isinstance(payload, dict):
        if azure_monitor.matches(payload):
            return azure_monitor.KIND, azure_monitor.parse(payload, dimension_names)
        if sentinel_incident.matches(payload):
            return sentinel_incident.KIND, sentinel_incident.parse(payload)
        if sentinel_alert.matches(payload):
            return sentinel_alert.KIND, sentinel_alert.parse(payload)
        if defender_xdr.matches(payload):
            return defender_xdr.KIND, defender_xdr.parse(payload)
    detail = f"expected {EXPECTED_SHAPES}"
    raise ProblemError(400, "Unrecognized alert payload", detail, [field_error("", "not a known alert shape")])
