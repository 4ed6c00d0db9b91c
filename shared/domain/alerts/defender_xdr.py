"""Microsoft Defender XDR alert as Microsoft Graph security returns it (`/security/alerts_v2`).

Accepted: one alert object, or a list response `{"value": [alerts]}`. Users come from `evidence[]`
items of type `#microsoft.graph.security.userEvidence`: `userAccount.azureAdUserId` first (an object
id survives renames), else `userAccount.userPrincipalName`. A user evidence with neither is an
on-premises account (Defender for Identity) and is reported as unusable.

Several alerts posted together are one delivery: its id is derived from their sorted ids, so the same
list delivered twice maps to the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from shared.domain.alerts.common import Candidate, Parsed, describe, field, items, or_else, required_id, text, title

KIND = "defender_xdr"
_NOT_ENTRA = "not an Entra ID account: no azureAdUserId and no userPrincipalName"


def matches(payload: dict[str, Any]) -> bool:
    return bool(_alerts(payload))


def parse(payload: dict[str, Any]) -> Parsed:
    located = _alerts(payload)
    ids = [required_id(alert, f"{pointer}/id", "id") for pointer, alert in located]
    alerts = [alert for _, alert in located]
    name = title(field(alerts[0], "title"), "Microsoft Defender XDR alert")
    if len(alerts) > 1:
        name = title(f"{name} (and {len(alerts) - 1} more alerts)", name)
    return Parsed(alert_id=_delivery_id(ids), name=name, resolved=False, found=_found(alerts))


def _alerts(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The alerts, each with its JSON Pointer."""
    listed = field(payload, "value")
    located = [(f"/value/{index}", item) for index, item in enumerate(listed)] if isinstance(listed, list) else [("", payload)]
    return [(pointer, alert) for pointer, alert in located if isinstance(alert, dict) and _is_alert(alert)]


def _is_alert(alert: dict[str, Any]) -> bool:
    return isinstance(field(alert, "evidence"), list) or _odata_type(alert).endswith("security.alert")


def _delivery_id(ids: list[str]) -> str:
    if len(ids) == 1:
        return ids[0]
    return "alerts:" + hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()[:40]


def _found(alerts: list[dict[str, Any]]) -> Iterator[Candidate]:
    evidence = (item for alert in alerts for item in items(field(alert, "evidence")))
    users = (_user(item) for item in evidence if _odata_type(item).endswith("userevidence"))
    yield from or_else(users, Candidate("alert", reason="the alert has no userEvidence"))


def _user(evidence: object) -> Candidate:
    account = field(evidence, "userAccount")
    identifiers = {"azureAdUserId": field(account, "azureAdUserId"), "userPrincipalName": field(account, "userPrincipalName")}
    shown = {**identifiers, "accountName": field(account, "accountName"), "domainName": field(account, "domainName")}
    options = tuple((f"userEvidence {name}", value) for name, value in identifiers.items() if value is not None)
    return Candidate(describe("userEvidence", shown), options, "" if options else _NOT_ENTRA)


def _odata_type(value: object) -> str:
    return (text(field(value, "@odata.type")) or "").lower()
