"""Alert payloads: which users each of Microsoft's published samples names, and what is refused."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.domain.alerts import DEFAULT_USER_DIMENSIONS, MAX_ENTITIES, AlertUsers, parse_alert
from shared.domain.problems import ProblemError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerts"
ADELE_ID = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
SUBSCRIPTION = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
MONITOR_ALERT_ID = f"{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/eeeeeeee-4444-5555-6666-ffffffffffff"
ACTIVITY_ALERT_ID = f"{SUBSCRIPTION}/resourceGroups/test-RG/providers/microsoft.insights/activityLogAlerts/Test_Alert"
INCIDENT_ID = (
    "/subscriptions/d0cfe6b2-9ac0-4464-9919-dccaee2e48c0/resourceGroups/myRg/providers/Microsoft.OperationalInsights"
    "/workspaces/myWorkspace/providers/Microsoft.SecurityInsights/Incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5"
)
XDR_ALERT_ID = "da637578995287051192_756343937"
NOT_ENTRA = "not an Entra ID account: no AadUserId and no UPNSuffix"
ON_PREMISES = {"entity": "Account Name='administrator' NTDomain='domain'", "reason": NOT_ENTRA}


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def values(result: AlertUsers) -> list[str]:
    return [user.value for user in result.users]


def caller_opted_in(fixture: str, opt_in: object = True) -> Any:
    """An activity log alert whose rule sets the custom property signOutCaller."""
    payload = load(fixture)
    payload["data"]["customProperties"] = {"signOutCaller": opt_in}
    return payload


@pytest.mark.parametrize(
    ("fixture", "kind", "alert_id", "name", "users"),
    [
        ("azure_monitor_metric", "azure_monitor", MONITOR_ALERT_ID, "test-metricAlertRule", []),
        ("azure_monitor_log_v2_fired", "azure_monitor", MONITOR_ALERT_ID, "test-logAlertRule-v2", ["adele.vance@contoso.com"]),
        ("azure_monitor_log_v1", "azure_monitor", MONITOR_ALERT_ID, "test-logAlertRule-v1-numResults", []),
        ("azure_monitor_activity_log", "azure_monitor", ACTIVITY_ALERT_ID, "test-activityLogAlertRule", []),  # not opted in
        ("sentinel_alert", "sentinel_alert", "baa8a239-6fde-4ab7-a093-d09f7b75c58c", "myAlert", [ADELE_ID]),
        ("sentinel_incident", "sentinel_incident", INCIDENT_ID, "My incident", [ADELE_ID, "alex.wilber@contoso.com"]),
        ("sentinel_accounts", "sentinel_incident", INCIDENT_ID, "My incident", ["alex.wilber@contoso.com", ADELE_ID]),
        ("defender_xdr_alert", "defender_xdr", XDR_ALERT_ID, "Suspicious execution of hidden file", [ADELE_ID]),
    ],
)
def test_each_published_sample(fixture: str, kind: str, alert_id: str, name: str, users: list[str]) -> None:
    result = parse_alert(load(fixture))
    assert (result.kind, result.alert_id, result.name, result.resolved) == (kind, alert_id, name, False)
    assert values(result) == users
    assert len(result.sources) == len(result.users)


def test_metric_alert_explains_it_has_no_user() -> None:
    result = parse_alert(load("azure_monitor_metric"))
    reason = "metric alerts carry no user identity; split a log search alert by a user dimension"
    assert result.unusable == ({"entity": "metric alert", "reason": reason},)


def test_log_alert_without_user_dimension_names_what_it_saw_and_what_to_split_by() -> None:
    (note,) = parse_alert(load("azure_monitor_log_v1")).unusable
    assert note["entity"] == "log search alert dimensions='TenantId, Computer, TimeGenerated'"
    assert note["reason"].startswith("no dimension names a user; split the log search alert rule by a user column")
    assert "UserPrincipalName" in note["reason"]


def test_log_alert_v2_user_comes_from_its_dimension() -> None:
    result = parse_alert(load("azure_monitor_log_v2_fired"))
    assert (result.sources, result.unusable) == (("dimension UserPrincipalName",), ())


def test_resolved_alert_keeps_its_id_so_it_matches_the_fired_one() -> None:
    fired, resolved = parse_alert(load("azure_monitor_log_v2_fired")), parse_alert(load("azure_monitor_log_v2_resolved"))
    assert resolved.resolved and not fired.resolved
    assert resolved.alert_id == fired.alert_id
    assert values(resolved) == values(fired)


def test_monitor_condition_is_read_case_insensitively() -> None:
    payload = load("azure_monitor_log_v2_fired")
    payload["data"]["essentials"]["monitorCondition"] = "resolved"
    assert parse_alert(payload).resolved


def test_custom_dimension_names_replace_the_defaults() -> None:
    payload = load("azure_monitor_log_v2_fired")
    payload["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"][0]["name"] = "Actor"
    assert parse_alert(payload).users == ()
    result = parse_alert(payload, dimension_names=frozenset({"actor"}))
    assert (values(result), result.sources) == (["adele.vance@contoso.com"], ("dimension Actor",))


def test_default_dimension_names_match_any_case() -> None:
    assert "UserPrincipalName" in DEFAULT_USER_DIMENSIONS
    payload = load("azure_monitor_log_v2_fired")
    payload["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"][0]["name"] = "accountupn"
    assert values(parse_alert(payload)) == ["adele.vance@contoso.com"]


def test_user_dimension_with_an_invalid_value_is_unusable_with_the_validators_reason() -> None:
    payload = load("azure_monitor_log_v2_fired")
    payload["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"][0]["value"] = "CONTOSO\\adele"
    result = parse_alert(payload)
    assert result.users == ()
    assert result.unusable == (
        {
            "entity": "dimension UserPrincipalName='CONTOSO\\\\adele'",
            "reason": "dimension UserPrincipalName is neither an object id (GUID) nor a user principal name (name@domain)",
        },
    )


def test_custom_properties_can_name_the_user() -> None:
    payload = load("azure_monitor_metric")
    payload["data"]["customProperties"]["UPN"] = "adele.vance@contoso.com"
    result = parse_alert(payload)
    assert (values(result), result.sources, result.unusable) == (["adele.vance@contoso.com"], ("custom property UPN",), ())


def test_log_alert_v1_search_result_columns_can_name_users() -> None:
    payload = load("azure_monitor_log_v1")
    table = payload["data"]["alertContext"]["SearchResults"]["tables"][0]
    table["columns"][1]["name"] = "UserPrincipalName"
    table["rows"] = [["t", upn, "x"] for upn in ("adele.vance@contoso.com", "alex.wilber@contoso.com", "Adele.Vance@contoso.com")]
    assert values(parse_alert(payload)) == ["adele.vance@contoso.com", "alex.wilber@contoso.com"]


def test_log_alert_v1_dimensions_can_name_the_user() -> None:
    payload = load("azure_monitor_log_v1")
    payload["data"]["alertContext"]["Dimensions"] = [{"name": "AccountObjectId", "value": ADELE_ID.upper()}]
    assert values(parse_alert(payload)) == [ADELE_ID]


def test_activity_log_caller_is_not_a_target_unless_the_rule_opts_in() -> None:
    result = parse_alert(load("azure_monitor_activity_log"))
    assert (result.users, result.unusable) == ((), ())
    assert result.ignored is not None
    assert "signOutCaller=true" in result.ignored and "custom property" in result.ignored


@pytest.mark.parametrize("opt_in", [True, "true", "TRUE", " True "])
def test_activity_log_caller_is_signed_out_when_the_rule_opts_in(opt_in: object) -> None:
    result = parse_alert(caller_opted_in("azure_monitor_activity_log", opt_in))
    assert values(result) == ["user@contoso.com"]
    assert (result.sources, result.unusable, result.ignored) == (("activity log caller",), (), None)


@pytest.mark.parametrize("opt_in", [False, "false", "yes", "1", 1, None, {}, ["true"]])
def test_anything_but_true_does_not_opt_in(opt_in: object) -> None:
    result = parse_alert(caller_opted_in("azure_monitor_activity_log", opt_in))
    assert result.users == () and result.ignored is not None


def test_the_events_own_properties_cannot_opt_in() -> None:
    payload = load("azure_monitor_activity_log")
    payload["data"]["alertContext"]["properties"]["signOutCaller"] = "true"  # written by the operation, not the rule
    result = parse_alert(payload)
    assert result.users == () and result.ignored is not None


def test_activity_log_custom_property_user_is_used_and_the_caller_is_not() -> None:
    payload = load("azure_monitor_activity_log")
    payload["data"]["customProperties"] = {"UserPrincipalName": "adele.vance@contoso.com"}
    result = parse_alert(payload)
    assert (values(result), result.sources, result.ignored) == (
        ["adele.vance@contoso.com"],
        ("custom property UserPrincipalName",),
        None,
    )


def test_activity_log_custom_property_user_that_is_invalid_is_unusable_not_ignored() -> None:
    payload = load("azure_monitor_activity_log")
    payload["data"]["customProperties"] = {"UserPrincipalName": "not a user"}
    result = parse_alert(payload)
    assert (result.users, result.ignored) == ((), None)
    (note,) = result.unusable
    assert note["entity"] == "custom property UserPrincipalName='not a user'"


def test_other_alerts_are_never_ignored() -> None:
    for fixture in ("azure_monitor_metric", "azure_monitor_log_v1", "sentinel_alert", "defender_xdr_alert"):
        assert parse_alert(load(fixture)).ignored is None


def test_activity_log_caller_that_is_an_object_id_is_a_service_principal_and_not_used() -> None:
    result = parse_alert(caller_opted_in("azure_monitor_activity_log_service_principal"))
    assert result.users == ()
    (note,) = result.unusable
    assert note["entity"] == "activity log caller='22223333-cccc-4444-dddd-5555eeee6666'"
    assert "service principals" in note["reason"]


@pytest.mark.parametrize("caller", [None, "Microsoft.Insights/autoscaleSettings"])
def test_activity_log_without_a_user_caller_explains(caller: str | None) -> None:
    payload = caller_opted_in("azure_monitor_activity_log")
    payload["data"]["alertContext"]["caller"] = caller
    result = parse_alert(payload)
    assert (result.users, result.ignored) == ((), None)
    assert len(result.unusable) == 1


def test_other_alert_kinds_explain_they_carry_no_user() -> None:
    payload = load("azure_monitor_metric")
    payload["data"]["essentials"].update(signalType=None, monitoringService="SmartDetector")
    (note,) = parse_alert(payload).unusable
    assert note["entity"] == "alert monitoringService='SmartDetector'"


def test_alert_id_falls_back_to_origin_alert_id() -> None:
    payload = load("azure_monitor_metric")
    del payload["data"]["essentials"]["alertId"]
    assert parse_alert(payload).alert_id == payload["data"]["essentials"]["originAlertId"]


def test_budget_alert_without_rule_name_gets_a_default_name() -> None:
    payload = load("azure_monitor_metric")
    payload["data"]["essentials"]["alertRule"] = None
    assert parse_alert(payload).name == "Azure Monitor alert"


@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\x85", "\x9b"])
def test_control_characters_the_description_refuses_are_dropped_from_the_name(control: str) -> None:
    payload = load("azure_monitor_log_v2_fired")
    payload["data"]["essentials"]["alertRule"] = f"risky{control} sign-in\tSev1\r\nsecond line"
    result = parse_alert(payload)
    assert result.name == "risky sign-in\tSev1\r\nsecond line"  # what a description may hold is kept
    assert values(result) == ["adele.vance@contoso.com"]  # the user is still signed out


def test_a_name_of_control_characters_only_gets_the_default_name() -> None:
    payload = load("sentinel_alert")
    payload["AlertDisplayName"] = "\x00\x1b\x9b"
    assert parse_alert(payload).name == "Microsoft Sentinel alert"


@pytest.mark.parametrize("control", ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028"])
@pytest.mark.parametrize(
    ("fixture", "path", "pointer"),
    [
        ("azure_monitor_log_v2_fired", ("data", "essentials", "alertId"), "/data/essentials/alertId"),
        ("sentinel_alert", ("SystemAlertId",), "/SystemAlertId"),
        ("sentinel_incident", ("object", "id"), "/object/id"),
        ("defender_xdr_alert", ("id",), "/id"),
    ],
)
def test_alert_id_with_a_control_character_is_refused(control: str, fixture: str, path: tuple[str, ...], pointer: str) -> None:
    payload = load(fixture)
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = f"alert-1{control}forged"
    with pytest.raises(ProblemError) as caught:
        parse_alert(payload)
    assert (caught.value.status, caught.value.title) == (400, "Invalid alert id")
    assert caught.value.errors == [{"pointer": pointer, "detail": "not printable"}]


def test_name_is_truncated_to_1024_characters() -> None:
    payload = load("azure_monitor_metric")
    payload["data"]["essentials"]["alertRule"] = "r" * 5000
    name = parse_alert(payload).name
    assert len(name) == 1024 and name.endswith("…")


def test_sentinel_alert_reads_an_on_premises_account_as_unusable() -> None:
    assert parse_alert(load("sentinel_alert")).unusable == (ON_PREMISES,)


def test_sentinel_alert_entities_may_already_be_a_list() -> None:
    payload = load("sentinel_alert")
    payload["Entities"] = json.loads(payload["Entities"])
    assert values(parse_alert(payload)) == [ADELE_ID]


def test_sentinel_account_prefers_object_id_then_upn_and_never_guesses() -> None:
    entities = [
        {"Type": "account", "Name": "adele.vance", "UPNSuffix": "contoso.com", "AadUserId": "not-a-guid"},
        {"Type": "Account", "Name": "alex.wilber"},
        {"Type": "account", "Sid": "S-1-5-21-1721254763-462695806-1538882281-4156657"},
        {"Type": "account", "Name": "CONTOSO\\megan"},
    ]
    result = parse_alert({"SystemAlertId": "a1", "Entities": entities})
    assert values(result) == ["adele.vance@contoso.com"]
    assert result.sources == ("Account Name@UPNSuffix",)
    assert [note["reason"] for note in result.unusable] == [NOT_ENTRA] * 3


def test_sentinel_alert_without_an_account_explains() -> None:
    payload = load("sentinel_alert")
    payload["Entities"] = "[]"
    reason = "the alert has no Account entity; map one (AadUserId, or Name and UPNSuffix) in the analytics rule"
    assert parse_alert(payload).unusable == ({"entity": "alert", "reason": reason},)


@pytest.mark.parametrize(
    ("entities", "reason"),
    [
        ("[{", "Entities is not valid JSON"),
        ('{"a": 1}', "Entities is not a JSON list"),
        (7, "Entities is neither a list nor JSON text"),
    ],
)
def test_sentinel_alert_with_unreadable_entities_says_so(entities: object, reason: str) -> None:
    payload = load("sentinel_alert")
    payload["Entities"] = entities
    assert parse_alert(payload).unusable == ({"entity": "Entities", "reason": reason},)


def test_sentinel_alert_id_falls_back_to_the_vendor_id() -> None:
    payload = load("sentinel_alert")
    del payload["SystemAlertId"]
    payload["VendorOriginalId"] = "vendor-7"
    assert parse_alert(payload).alert_id == "vendor-7"


def test_sentinel_incident_collapses_duplicate_accounts_and_reports_the_on_premises_one() -> None:
    result = parse_alert(load("sentinel_incident"))
    assert values(result) == [ADELE_ID, "alex.wilber@contoso.com"]
    assert result.sources == ("Account AadUserId", "Account Name@UPNSuffix")
    assert result.unusable == (ON_PREMISES,)


def test_sentinel_incident_resource_itself_is_accepted() -> None:
    result = parse_alert(load("sentinel_incident")["object"])
    assert (result.kind, result.alert_id, len(result.users)) == ("sentinel_incident", INCIDENT_ID, 2)


def test_sentinel_incident_accepts_pascal_case_entities() -> None:
    payload = load("sentinel_incident")
    payload["object"]["properties"]["relatedEntities"] = [{"Type": "account", "Name": "megan", "UPNSuffix": "contoso.com"}]
    assert values(parse_alert(payload)) == ["megan@contoso.com"]


def test_sentinel_accounts_without_incident_id_are_refused() -> None:
    payload = load("sentinel_accounts")
    del payload["incidentArmId"]
    with pytest.raises(ProblemError) as caught:
        parse_alert(payload)
    assert caught.value.status == 400
    assert "incidentArmId" in caught.value.detail


def test_defender_alert_prefers_object_id_and_reports_on_premises_user_evidence() -> None:
    result = parse_alert(load("defender_xdr_alert"))
    assert result.sources == ("userEvidence azureAdUserId",)
    reason = "not an Entra ID account: no azureAdUserId and no userPrincipalName"
    assert result.unusable == ({"entity": "userEvidence accountName='svc_backup' domainName='CONTOSO'", "reason": reason},)


def test_defender_list_response_of_several_alerts_is_one_delivery() -> None:
    alert = load("defender_xdr_alert")
    other = copy.deepcopy(alert) | {"id": "da637551227677560813_-961444813", "evidence": []}
    result = parse_alert({"value": [alert, other]})
    again = parse_alert({"value": [other, alert]})
    assert result.kind == "defender_xdr"
    assert result.alert_id == again.alert_id and result.alert_id.startswith("alerts:")
    assert result.name == "Suspicious execution of hidden file (and 1 more alerts)"
    assert values(result) == [ADELE_ID]
    assert values(parse_alert({"value": [alert]})) == [ADELE_ID]
    assert parse_alert({"value": [alert]}).alert_id == alert["id"]


def test_defender_alert_without_user_evidence_explains() -> None:
    alert = load("defender_xdr_alert")
    alert["evidence"] = alert["evidence"][:2]
    assert parse_alert(alert).unusable == ({"entity": "alert", "reason": "the alert has no userEvidence"},)


def test_the_same_alert_delivered_twice_maps_to_the_same_id() -> None:
    for fixture in ("azure_monitor_log_v2_fired", "sentinel_alert", "sentinel_incident", "defender_xdr_alert"):
        assert parse_alert(load(fixture)).alert_id == parse_alert(load(fixture)).alert_id


@pytest.mark.parametrize(
    "payload",
    [None, [], "alert", 42, {}, {"schemaId": "Microsoft.Insights/activityLogs", "data": {}}, {"value": []}, {"hello": "world"}],
)
def test_unknown_shapes_are_refused_naming_the_expected_ones(payload: object) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_alert(payload)
    problem = caught.value
    assert problem.status == 400
    for expected in ("azureMonitorCommonAlertSchema", "Sentinel alert", "Sentinel incident", "Defender XDR"):
        assert expected in problem.detail


@pytest.mark.parametrize(
    ("payload", "pointer"),
    [
        ({"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {"alertRule": "r"}}}, "/data/essentials/alertId"),
        ({"schemaId": "azureMonitorCommonAlertSchema", "data": []}, "/data/essentials"),
        ({"object": {"properties": {"title": "t", "relatedEntities": []}}}, "/object/id"),
        ({"Entities": "[]", "AlertDisplayName": "a"}, "/SystemAlertId"),
        ({"title": "t", "evidence": []}, "/id"),
        ({"SystemAlertId": "x" * 1025}, "/SystemAlertId"),
    ],
)
def test_payloads_without_a_usable_id_are_refused(payload: dict, pointer: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_alert(payload)
    assert caught.value.status == 400
    assert caught.value.errors[0]["pointer"] == pointer


def test_entities_beyond_the_limit_are_not_considered_and_the_overflow_is_reported() -> None:
    entities = [{"Type": "account", "Name": f"user{n}", "UPNSuffix": "contoso.com"} for n in range(MAX_ENTITIES + 5)]
    result = parse_alert({"SystemAlertId": "a1", "Entities": entities})
    assert len(result.users) == MAX_ENTITIES
    reason = f"more than {MAX_ENTITIES} accounts; only the first {MAX_ENTITIES} were considered"
    assert result.unusable == ({"entity": "payload", "reason": reason},)


def test_deeply_nested_entities_text_is_unusable_not_a_crash() -> None:
    result = parse_alert({"SystemAlertId": "a1", "Entities": "[" * 100_000 + "]" * 100_000})
    assert result.unusable == ({"entity": "Entities", "reason": "Entities is not valid JSON"},)


def test_huge_values_are_echoed_back_clipped() -> None:
    huge = {"Type": "account", "Name": "x" * 100_000, "NTDomain": "d" * 100_000}
    result = parse_alert({"SystemAlertId": "a1", "Entities": [huge]})
    (note,) = result.unusable
    assert len(note["entity"]) <= 200


def test_empty_dimension_names_match_nothing() -> None:
    result = parse_alert(load("azure_monitor_log_v2_fired"), dimension_names=frozenset())
    assert result.users == ()
    assert result.unusable[0]["reason"].endswith("(none are configured)")


def test_defender_alert_without_id_in_a_list_is_located_by_its_pointer() -> None:
    alert = load("defender_xdr_alert")
    del alert["id"]
    with pytest.raises(ProblemError) as caught:
        parse_alert({"value": ["junk", alert]})
    assert caught.value.errors[0]["pointer"] == "/value/1/id"
