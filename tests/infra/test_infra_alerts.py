"""Alert rules, their action group, the health availability test and the "Force sign-out" workbook
(infra/app/alerts.bicep, with its queries in alerts.json and workbook.json): they exist with the
queries and thresholds README "Operating it" describes, are deployed from main.bicep, and every
table, column, dimension and metric their queries name is one the app's telemetry produces."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra_helpers import INFRA, accessor_path, body, one_resource, param_default, parse, resources_of_type

from shared.adapters.telemetry import APPLICATION_INSIGHTS_TABLES
from shared.usecases.audit_log import STATE_CHANGE_ATTRIBUTES
from shared.usecases.tracing import METRIC_DIMENSIONS, METRICS

ALERTS = parse("app/alerts.bicep")
QUERIES = json.loads((INFRA / "app" / "alerts.json").read_text())
WORKBOOK = json.loads((INFRA / "app" / "workbook.json").read_text())
RULES = resources_of_type(ALERTS, "Microsoft.Insights/scheduledQueryRules")
# (rule symbol, aggregation window, threshold: a literal or the parameter that holds it, with its default)
EXPECTED_RULES = {
    "poisonMessages": ("PT5M", 0),
    "permissionDenied": ("PT5M", 0),
    "gaveUp": ("PT1H", ("gaveUpThreshold", 5)),
    "timeToRevoke": ("PT15M", ("timeToRevokeP95Seconds", 60)),
}
DIMENSIONS = {"traces": set(STATE_CHANGE_ATTRIBUTES), "customMetrics": set(METRIC_DIMENSIONS)}
EVERY_COLUMN = set().union(*APPLICATION_INSIGHTS_TABLES.values())


def workbook_queries() -> list[str]:
    return [item["content"]["query"] for item in WORKBOOK["items"] if item["type"] == 3]


def all_queries() -> list[str]:
    return [rule["query"] for rule in QUERIES.values()] + workbook_queries()


def criterion(symbol: str) -> dict[str, Any]:
    [only] = body(RULES[symbol])["properties"]["criteria"]["allOf"]
    return only


def test_every_alert_rule_exists_with_its_query_window_and_threshold() -> None:
    assert set(RULES) == set(EXPECTED_RULES) == set(QUERIES)
    for symbol, (window, threshold) in EXPECTED_RULES.items():
        properties = body(RULES[symbol])["properties"]
        assert properties["windowSize"] == window, symbol
        assert accessor_path(properties["scopes"][0]) == ["applicationInsights", "id"]
        found = criterion(symbol)
        assert accessor_path(found["query"]) == ["queries", symbol, "query"]
        assert accessor_path(found["metricMeasureColumn"]) == ["queries", symbol, "measure"]
        assert QUERIES[symbol]["measure"] in QUERIES[symbol]["query"]
        assert found["operator"] == "GreaterThan"
        if isinstance(threshold, tuple):
            assert found["threshold"] == threshold[0]
            assert param_default(ALERTS, threshold[0]) == threshold[1]
        else:
            assert found["threshold"] == threshold


def test_the_alerts_ask_the_right_questions() -> None:
    assert '"signout.poison.messages"' in QUERIES["poisonMessages"]["query"]
    assert '"permission_denied"' in QUERIES["permissionDenied"]["query"]
    assert '"gave_up"' in QUERIES["gaveUp"]["query"]
    assert "percentile(seconds, 95)" in QUERIES["timeToRevoke"]["query"]
    # the permission alert says how to fix it
    assert "User.RevokeSessions.All" in QUERIES["permissionDenied"]["description"]


@pytest.mark.parametrize("symbol", sorted(EXPECTED_RULES))
def test_every_rule_notifies_the_action_group(symbol: str) -> None:
    actions = body(RULES[symbol])["properties"]["actions"]["actionGroups"]
    assert [accessor_path(action) for action in actions] == [["actionGroup", "id"]]


def test_the_action_group_takes_its_email_and_webhook_from_parameters() -> None:
    _, group = one_resource(ALERTS, "Microsoft.Insights/actionGroups")
    properties = body(group)["properties"]
    email = properties["emailReceivers"]["operator"]["operands"]["false_value"][0]
    webhook = properties["webhookReceivers"]["operator"]["operands"]["false_value"][0]
    assert (email["emailAddress"], webhook["serviceUri"]) == ("alertEmail", "alertWebhookUrl")
    assert any(d for d in ALERTS["parameters"]["alertWebhookUrl"]["decorators"] if "secure" in json.dumps(d))


def test_health_is_tested_from_three_locations_and_alerts_when_two_fail() -> None:
    _, test = one_resource(ALERTS, "Microsoft.Insights/webtests")
    properties = body(test)["properties"]
    assert (properties["Kind"], properties["Request"]["RequestUrl"]) == ("standard", "healthUrl")
    assert len(properties["Locations"]) == 3
    _, alert = one_resource(ALERTS, "Microsoft.Insights/metricAlerts")
    criteria = body(alert)["properties"]["criteria"]
    assert accessor_path(criteria["webTestId"]) == ["healthTest", "id"]
    assert criteria["failedLocationCount"] == 2
    [action] = body(alert)["properties"]["actions"]
    assert accessor_path(action["actionGroupId"]) == ["actionGroup", "id"]


def test_the_workbook_is_deployed_with_its_json() -> None:
    _, workbook = one_resource(ALERTS, "Microsoft.Insights/workbooks")
    properties = body(workbook)["properties"]
    assert properties["displayName"] == "Force sign-out"
    assert properties["serializedData"]["function"]["parameters"]["file_path"] == "workbook.json"
    names = {item["name"] for item in WORKBOOK["items"]}
    assert {"remediation-log", "time-to-revoke", "failures", "graph-throttling", "bulk-jobs"} <= names
    filters = next(item for item in WORKBOOK["items"] if item["type"] == 9)["content"]["parameters"]
    assert {"TimeRange", "User", "Status", "CorrelationId", "Job"} <= {parameter["name"] for parameter in filters}


def test_main_deploys_the_alerts_module() -> None:
    main = parse("main.bicep")
    params = main["modules"]["alerts"]["config"]["params"]
    assert (params["alertEmail"], params["alertWebhookUrl"], params["gaveUpThreshold"]) == (
        "alertEmail",
        "alertWebhookUrl",
        "alertGaveUpThreshold",
    )
    assert params["healthUrl"] == "${function.outputs.uri}/api/health"


@pytest.mark.parametrize("query", all_queries(), ids=lambda query: query.splitlines()[0] + ":" + query.splitlines()[1][:40])
def test_every_query_names_only_what_the_telemetry_produces(query: str) -> None:
    table = query.split("\n", 1)[0].strip()
    assert table in APPLICATION_INSIGHTS_TABLES, table
    dimensions = set(re.findall(r"customDimensions\.(\w+)", query)) | set(re.findall(r"customDimensions\[\"(\w+)\"\]", query))
    assert dimensions <= DIMENSIONS.get(table, set()), dimensions - DIMENSIONS.get(table, set())
    assert set(re.findall(r'\bname == "([\w.]+)"', query)) <= set(METRICS)
    without_dimensions = re.sub(r"customDimensions\.\w+", "", query)
    columns = {word for word in re.findall(r"\b\w+\b", without_dimensions) if word in EVERY_COLUMN}
    assert columns <= APPLICATION_INSIGHTS_TABLES[table], columns - APPLICATION_INSIGHTS_TABLES[table]
