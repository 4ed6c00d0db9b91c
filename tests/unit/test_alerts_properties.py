"""Alert parsing never trusts the payload: any JSON value either parses into valid users or is a 400."""

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.alerts import AlertUsers, parse_alert
from shared.domain.identifiers import parse_user
from shared.domain.problems import ProblemError
from shared.domain.text import printable

FIXTURE_DIR = Path(__file__).parent.parent / "fixtures" / "alerts"
FIXTURES = {path.stem: json.loads(path.read_text()) for path in FIXTURE_DIR.glob("*.json")}
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys and values the parsers look for, so random payloads reach deep into every shape.
KEYS = [
    "schemaId",
    "data",
    "essentials",
    "alertId",
    "originAlertId",
    "alertRule",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "alertContext",
    "condition",
    "allOf",
    "dimensions",
    "Dimensions",
    "name",
    "value",
    "SearchResults",
    "tables",
    "columns",
    "rows",
    "customProperties",
    "properties",
    "caller",
    "signOutCaller",
    "object",
    "id",
    "title",
    "relatedEntities",
    "kind",
    "Type",
    "AadUserId",
    "aadUserId",
    "Name",
    "accountName",
    "UPNSuffix",
    "upnSuffix",
    "NTDomain",
    "Accounts",
    "incidentArmId",
    "SystemAlertId",
    "Entities",
    "AlertDisplayName",
    "evidence",
    "@odata.type",
    "userAccount",
    "azureAdUserId",
    "userPrincipalName",
]
VALUES = [
    "azureMonitorCommonAlertSchema",
    "Log",
    "Metric",
    "Activity Log",
    "Resolved",
    "LogQueryCriteria",
    "account",
    "Account",
    "#microsoft.graph.security.userEvidence",
    "#microsoft.graph.security.alert",
    "UserPrincipalName",
    "adele.vance@contoso.com",
    "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
    "contoso.com",
    "CONTOSO\\adele",
    "[{",
    "[]",
    '[{"Type": "account", "AadUserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"}]',
    "",
    " ",
    "x" * 2000,
    "true",
    "alert\r\nforged",
    "\x1b[31m\x85\x00",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(VALUES)
)
keys = st.sampled_from(KEYS) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


def assert_well_formed(result: AlertUsers, payload: object) -> None:
    assert result.kind in {"azure_monitor", "sentinel_alert", "sentinel_incident", "defender_xdr"}
    assert isinstance(result.alert_id, str) and 0 < len(result.alert_id) <= 1024
    assert printable(result.alert_id)  # one line, as the API stores and logs it
    assert isinstance(result.name, str) and 0 < len(result.name) <= 1024
    assert printable(result.name, multiline=True)  # what a task description may hold
    if "activity log caller" in result.sources:  # only a rule that opted in signs its caller out
        assert opted_in(lookup(payload, "data", "customProperties", "signOutCaller"))
    if result.ignored is not None:
        assert result.kind == "azure_monitor" and result.users == () and result.unusable == ()
    assert all(parse_user(user.value) == user for user in result.users)
    assert len({user.key for user in result.users}) == len(result.users) == len(result.sources)
    for note in result.unusable:
        assert set(note) == {"entity", "reason"}
        assert all(isinstance(text, str) and 0 < len(text) <= 200 for text in note.values())


def lookup(node: object, *path: str) -> object:
    """Follow keys case-insensitively (payloads come in PascalCase and camelCase)."""
    for name in path:
        if not isinstance(node, dict):
            return None
        node = next((value for key, value in node.items() if isinstance(key, str) and key.lower() == name.lower()), None)
    return node


def opted_in(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parses_or_refuses(payload: object) -> None:
    try:
        result = parse_alert(payload)
    except ProblemError as problem:
        assert problem.status == 400 and problem.detail
    else:
        assert_well_formed(result, payload)


@PROPERTIES
@given(json_values)
def test_any_json_value_parses_or_is_refused(payload: object) -> None:
    parses_or_refuses(payload)


@PROPERTIES
@given(st.sampled_from(sorted(FIXTURES)), st.data())
def test_mutated_fixtures_parse_or_are_refused(fixture: str, data: st.DataObject) -> None:
    payload = copy.deepcopy(FIXTURES[fixture])
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        payload = mutate(payload, data)
    if isinstance(payload, dict) and "schemaId" in FIXTURES[fixture]:  # keep Azure Monitor payloads recognisable
        payload["schemaId"] = FIXTURES[fixture]["schemaId"]
    parses_or_refuses(payload)


@PROPERTIES
@given(st.sampled_from(sorted(FIXTURES)), json_values)
def test_fixtures_with_junk_merged_in_parse_or_are_refused(fixture: str, junk: object) -> None:
    payload = copy.deepcopy(FIXTURES[fixture])
    if isinstance(junk, dict):
        payload.update(junk)
    parses_or_refuses(payload)


@PROPERTIES
@given(
    st.sampled_from(["azure_monitor_activity_log", "azure_monitor_activity_log_service_principal"]),
    json_values | st.sampled_from(["true", "TRUE", " true ", "false", "yes"]),
    st.booleans(),
)
def test_an_activity_log_caller_is_a_target_exactly_when_the_rule_opts_in(fixture: str, opt_in: object, named: bool) -> None:
    payload = copy.deepcopy(FIXTURES[fixture])
    if named:
        payload["data"]["customProperties"] = {"signOutCaller": opt_in}
    result = parse_alert(payload)
    caller_used = "activity log caller" in result.sources or any(
        note["entity"].startswith("activity log") for note in result.unusable
    )
    assert caller_used == (named and opted_in(opt_in))
    assert (result.ignored is None) == caller_used


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(FIXTURES)))
def test_parsing_is_deterministic(fixture: str) -> None:
    assert parse_alert(copy.deepcopy(FIXTURES[fixture])) == parse_alert(copy.deepcopy(FIXTURES[fixture]))


def mutate(node: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Walk to a random place below the root and break it: replace, drop, wrap or stringify a value."""
    children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
    if children and (depth == 0 or data.draw(st.integers(0, 4), label="descend") > 0):  # mostly deep: keep the shape
        key, child = data.draw(st.sampled_from(children), label="child")
        node[key] = mutate(child, data, depth + 1)
        if isinstance(node, dict) and data.draw(st.integers(0, 9), label="drop") == 0:
            del node[key]
        return node
    return data.draw(
        st.one_of(
            json_values,
            st.just([node]),
            st.just(json.dumps(node)),
            st.just({"value": node}),
            st.sampled_from(VALUES),
        ),
        label="replacement",
    )
