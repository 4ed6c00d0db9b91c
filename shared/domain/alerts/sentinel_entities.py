r"""Microsoft Sentinel Account entities, in every spelling Sentinel posts them.

- alert trigger / SecurityAlert `Entities`: flat PascalCase, `{"Type": "account", "Name", "UPNSuffix", "AadUserId"}`,
  often as JSON text rather than a list;
- incident trigger `relatedEntities`: ARM resources, `{"kind": "Account", "properties": {"accountName",
  "upnSuffix", "aadUserId"}}` (the resource's own `name` is the entity's GUID, never the account);
- the playbook action "Entities - Get Accounts": `{"Accounts": [...]}` of flat accounts.

An account is an Entra ID user only if it has an AadUserId (object id) or a Name with a UPNSuffix.
Anything else (a bare Name, NTDomain\Name, a Sid) is an on-premises or local account; guessing its
UPN could sign out the wrong person, so it is reported as unusable instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from shared.domain.alerts.common import Candidate, describe, field, text

MAX_ENTITIES_TEXT = 2_000_000  # characters of `Entities` JSON text parsed; alerts are far smaller
NOT_ENTRA = "not an Entra ID account: no AadUserId and no UPNSuffix"


def accounts(entities: Iterable[object], *, all_accounts: bool = False) -> Iterator[Candidate]:
    """A candidate per Account entity, skipping other types; `all_accounts`: untyped entities are accounts too."""
    for entity in entities:
        fields = _account_fields(entity, all_accounts)
        if fields is not None:
            yield account(fields)


def account(fields: dict[str, Any]) -> Candidate:
    object_id = field(fields, "AadUserId")
    name, suffix = text(field(fields, "accountName", "Name")), text(field(fields, "UPNSuffix"))
    on_premises = {"NTDomain": field(fields, "NTDomain"), "Sid": field(fields, "Sid")}
    seen = describe("Account", {"AadUserId": object_id, "Name": name, "UPNSuffix": suffix, **on_premises})
    options: list[tuple[str, object]] = []
    if object_id is not None:
        options.append(("Account AadUserId", object_id))
    if name and suffix:
        options.append(("Account Name@UPNSuffix", f"{name}@{suffix}"))
    if not options:
        return Candidate(seen, reason=NOT_ENTRA if not suffix else "not an Entra ID account: no AadUserId and no Name")
    return Candidate(seen, tuple(options))


def entity_list(value: object) -> tuple[list[object], str]:
    """The entities, from a list or from JSON text; with the reason when they cannot be read."""
    if value is None or isinstance(value, list):
        return value or [], ""
    if not isinstance(value, str):
        return [], "Entities is neither a list nor JSON text"
    if len(value) > MAX_ENTITIES_TEXT:
        return [], f"Entities text is longer than {MAX_ENTITIES_TEXT} characters"
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return [], "Entities is not valid JSON"
    return (parsed, "") if isinstance(parsed, list) else ([], "Entities is not a JSON list")


def _account_fields(entity: object, all_accounts: bool) -> dict[str, Any] | None:
    if not isinstance(entity, dict):
        return None
    # `kind` first: an ARM entity's `type` is "Microsoft.SecurityInsights/Entities"
    entity_type = text(field(entity, "kind")) or text(field(entity, "Type")) or ("account" if all_accounts else "")
    if entity_type.lower() != "account":
        return None
    properties = field(entity, "properties")
    return properties if isinstance(properties, dict) else entity
