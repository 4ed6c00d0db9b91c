"""Azure Monitor common alert schema, as an action group posts it to a webhook or an Azure Function.

Users come from log search alerts split by a user column: the dimensions (log alerts v2,
`alertContext.condition.allOf[].dimensions`; v1, `alertContext.Dimensions` and any embedded
`SearchResults` columns), and from custom properties the rule author set (`customProperties`,
and `alertContext.properties` where log alerts v2 repeat them), all matched by name.

An activity log alert's `caller` is the account that performed an Azure Resource Manager
operation, not an account the alert says is compromised: rules fire on routine administration and
one action group often serves many rules. So the caller is signed out only when the rule opts in
with the custom property `signOutCaller: true` (`data.customProperties`: the rule's custom
properties, `webhookProperties` of its action in ARM; boolean or the text "true", any case). Without
it the caller is no target, and an alert that names no other user is `ignored`, with the reason and
the fix. Azure records a user's UPN as the caller and
an object id for service principals and managed identities, so only UPN callers are used; an
object id is reported as unusable rather than guessed to be a user.

Metric and other alerts carry no user; they parse, with `unusable` saying what to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from shared.domain.alerts.common import Candidate, Parsed, describe, field, items, or_else, required_id, text, title
from shared.domain.identifiers import is_object_id
from shared.domain.problems import ProblemError, field_error

KIND = "azure_monitor"
SCHEMA_ID = "azureMonitorCommonAlertSchema"

# Columns that name the acting user in the tables log search alerts are written on (SigninLogs,
# AADUserRiskEvents, OfficeActivity, IdentityInfo, IdentityLogonEvents, CloudAppEvents, ...), matched
# case-insensitively. Target-user columns are left out on purpose: the target of an admin action is
# not the compromised account.
DEFAULT_USER_DIMENSIONS = frozenset(
    {
        "UserPrincipalName",
        "UPN",
        "AccountUPN",
        "UserId",
        "AADUserId",
        "AccountObjectId",
        "InitiatedByUser",  # AuditLogs rules: extend InitiatedByUser = tostring(InitiatedBy.user.userPrincipalName)
    }
)

_SEEN_NAMES = 6  # dimension names echoed back when none holds a user
SIGN_OUT_CALLER = "signOutCaller"  # custom property by which an activity log alert rule opts in
CALLER_NOT_OPTED_IN = (
    "an activity log alert's caller performed an Azure operation and is signed out only when the alert rule "
    f"opts in: add the custom property {SIGN_OUT_CALLER}=true to the rule (webhookProperties of its action in ARM), "
    "or name the user in a custom property such as UserPrincipalName"
)


def matches(payload: dict[str, Any]) -> bool:
    return (text(field(payload, "schemaId")) or "").lower() == SCHEMA_ID.lower()


def parse(payload: dict[str, Any], dimension_names: frozenset[str]) -> Parsed:
    data = field(payload, "data")
    essentials = field(data, "essentials")
    if not isinstance(essentials, dict):
        detail = "an Azure Monitor common schema alert has data.essentials"
        raise ProblemError(400, "Invalid Azure Monitor alert", detail, [field_error("/data/essentials", "missing")])
    caller_ignored = _signal(essentials) == "activitylog" and not _signs_out_caller(data)
    return Parsed(
        alert_id=required_id(essentials, "/data/essentials/alertId", "alertId", "originAlertId"),
        name=title(field(essentials, "alertRule"), "Azure Monitor alert"),
        resolved=(text(field(essentials, "monitorCondition")) or "").lower() == "resolved",
        found=_found(data, essentials, dimension_names),
        ignored=CALLER_NOT_OPTED_IN if caller_ignored else None,
    )


def _found(data: object, essentials: dict[str, Any], dimension_names: frozenset[str]) -> Iterator[Candidate]:
    context = field(data, "alertContext")
    wanted = {name.lower() for name in dimension_names}
    found = (
        Candidate(describe(label, {name: value}), ((f"{label} {name}", value),))
        for label, name, value in _named_values(data, context)
        if name.lower() in wanted
    )
    if _signal(essentials) == "activitylog":
        yield from found
        if _signs_out_caller(data):
            yield _caller(field(context, "caller"))
    else:
        yield from or_else(found, _no_user(essentials, context, dimension_names))


def _named_values(data: object, context: object) -> Iterator[tuple[str, str, object]]:
    """Every (label, name, value) an alert rule can carry a user in."""
    for criterion in items(field(field(context, "condition"), "allOf")):
        yield from _dimensions(field(criterion, "dimensions"))
    yield from _dimensions(field(context, "Dimensions"))
    for table in items(field(field(context, "SearchResults"), "tables")):
        yield from _cells(table)
    yield from _properties(field(data, "customProperties"))
    yield from _properties(field(context, "properties"))


def _dimensions(dimensions: object) -> Iterator[tuple[str, str, object]]:
    for dimension in items(dimensions):
        if name := text(field(dimension, "name")):
            yield "dimension", name, field(dimension, "value")


def _cells(table: object) -> Iterator[tuple[str, str, object]]:
    columns = [text(field(column, "name")) for column in items(field(table, "columns"))]
    for row in items(field(table, "rows")):
        for name, value in zip(columns, items(row), strict=False):  # a short row's missing cells are not users
            if name:
                yield "search result column", name, value


def _properties(properties: object) -> Iterator[tuple[str, str, object]]:
    if isinstance(properties, dict):
        for name, value in properties.items():
            if isinstance(name, str) and name.strip():
                yield "custom property", name, value


def _signal(essentials: dict[str, Any]) -> str:
    return (text(field(essentials, "signalType")) or "").lower().replace(" ", "")


def _signs_out_caller(data: object) -> bool:
    """Only the rule author's custom properties opt in: the event's own properties are not theirs."""
    opt_in = field(field(data, "customProperties"), SIGN_OUT_CALLER)
    return opt_in is True or (isinstance(opt_in, str) and opt_in.strip().lower() == "true")


def _caller(caller: object) -> Candidate:
    seen = describe("activity log", {"caller": caller})
    value = text(caller)
    if value is None:
        return Candidate(seen, reason="the activity log event has no caller, so no account performed it")
    if is_object_id(value):
        reason = "the caller is an object id, which Azure records for service principals and managed identities, not users"
        return Candidate(seen, reason=reason)
    return Candidate(seen, (("activity log caller", value),))


def _no_user(essentials: dict[str, Any], context: object, dimension_names: frozenset[str]) -> Candidate:
    signal = _signal(essentials)
    if signal == "log":
        seen = list(dict.fromkeys(name for _, name, _ in islice(_named_values(None, context), 1000)))[:_SEEN_NAMES]
        hint = ", ".join(sorted(dimension_names, key=str.lower)) or "(none are configured)"
        reason = f"no dimension names a user; split the log search alert rule by a user column such as {hint}"
        return Candidate(describe("log search alert", {"dimensions": ", ".join(seen)}), reason=reason)
    if signal == "metric":
        reason = "metric alerts carry no user identity; split a log search alert by a user dimension"
        return Candidate("metric alert", reason=reason)
    service = field(essentials, "monitoringService")
    reason = "this kind of alert carries no user identity; use a log search alert split by a user dimension"
    return Candidate(describe("alert", {"monitoringService": service}), reason=reason)
