"""Every caller the service is built for: alert rules, Sentinel, Defender XDR, Logic Apps."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import PIPELINE_TIMEOUT, CallbackReceiver, Sim, new_user, sign_out, wait_for_terminal, wait_until

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parents[1] / "fixtures" / "alerts"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def log_alert(upn: str, alert_id: str | None = None, condition: str = "Fired") -> dict[str, Any]:
    """A log search alert (v2, common schema) split by UserPrincipalName, from Microsoft's sample."""
    payload = fixture("azure_monitor_log_v2_fired")
    essentials = payload["data"]["essentials"]
    essentials["alertId"] = alert_id or f"/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/{uuid.uuid4()}"
    essentials["monitorCondition"] = condition
    for dimension in payload["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]:
        if dimension["name"] == "UserPrincipalName":
            dimension["value"] = upn
    return payload


def post_alert(api: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    return api.post("/api/alerts", json=payload)


def test_azure_monitor_log_alert_signs_out_the_dimension_user(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "monitor")
    payload = log_alert(user["userPrincipalName"])
    response = post_alert(api, payload)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "azure_monitor" and body["alertId"] == payload["data"]["essentials"]["alertId"]
    [task] = body["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert (record["status"], record["source"], record["description"]) == ("succeeded", "azure_monitor", "test-logAlertRule-v2")
    assert record["alertId"] == body["alertId"]


def test_resolved_notification_is_acknowledged_and_ignored(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "resolved")
    response = post_alert(api, log_alert(user["userPrincipalName"], condition="Resolved"))
    assert response.status_code == 200
    assert response.json()["ignored"] == "resolved"
    assert api.get("/api/signouts", params={"user": user["userPrincipalName"]}).json()["tasks"] == []


def test_duplicate_delivery_creates_no_second_revocation(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "dup")
    payload = log_alert(user["userPrincipalName"])
    first = post_alert(api, payload).json()["tasks"]
    wait_for_terminal(api, first[0]["statusUrl"])
    second = post_alert(api, copy.deepcopy(payload)).json()["tasks"]  # the action group retries
    assert [t["id"] for t in second] == [t["id"] for t in first]
    assert sim.user(user["id"])["revokeCount"] == 1


def test_alert_storm_for_one_user_is_not_fifty_revocations(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "storm")
    payloads = [log_alert(user["userPrincipalName"]) for _ in range(50)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda p: post_alert(api, p), payloads))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202][:1]
    task_ids = {r.json()["tasks"][0]["id"] for r in responses}
    for task_id in task_ids:
        wait_for_terminal(api, f"/api/signouts/{task_id}")
    # Alerts that arrive before the worker starts revoking join that revocation; the alerts that
    # arrive while it is under way join the next one. A storm lasting about one revocation
    # therefore costs two, on a loaded 2-core machine at most three - never fifty.
    assert sim.user(user["id"])["revokeCount"] == len(task_ids) <= 3


def test_sentinel_incident_signs_out_entra_accounts_and_reports_on_premises_ones(api: httpx.Client, sim: Sim) -> None:
    by_id, by_upn = new_user(sim, "incident-a"), new_user(sim, "incident-b")
    payload = fixture("sentinel_incident")
    payload["object"]["id"] += str(uuid.uuid4())  # a new incident
    text = re.sub("00aa00aa-bb11-cc22-dd33-44ee44ee44ee", by_id["id"], json.dumps(payload), flags=re.IGNORECASE)
    name, suffix = by_upn["userPrincipalName"].split("@")
    payload = json.loads(text)
    for entity in payload["object"]["properties"]["relatedEntities"]:
        props = entity.get("properties", {})
        if props.get("upnSuffix") and not props.get("aadUserId"):
            props["accountName"], props["upnSuffix"] = name, suffix
    response = post_alert(api, payload)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "sentinel_incident"
    assert {t["user"].lower() for t in body["tasks"]} == {by_id["id"], by_upn["userPrincipalName"]}
    assert any("not an Entra ID account" in item["reason"] or "Entra" in item["reason"] for item in body["unusable"])
    for task in body["tasks"]:
        assert wait_for_terminal(api, task["statusUrl"])["status"] == "succeeded"


def test_alert_with_only_on_premises_accounts_is_422_listing_them(api: httpx.Client) -> None:
    payload = fixture("sentinel_alert")
    entities = json.loads(payload["Entities"]) if isinstance(payload["Entities"], str) else payload["Entities"]
    kept = [e for e in entities if not e.get("AadUserId") and not e.get("UPNSuffix")]
    payload["Entities"] = json.dumps(kept)
    payload["SystemAlertId"] = str(uuid.uuid4())
    response = post_alert(api, payload)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"]


def test_defender_xdr_alert(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "xdr")
    text = re.sub(
        "00aa00aa-bb11-cc22-dd33-44ee44ee44ee", user["id"], json.dumps(fixture("defender_xdr_alert")), flags=re.IGNORECASE
    )
    payload = json.loads(text)
    payload["id"] = str(uuid.uuid4())
    response = post_alert(api, payload)
    assert response.status_code == 202, response.text
    [task] = [t for t in response.json()["tasks"] if t["user"] == user["id"]]
    assert wait_for_terminal(api, task["statusUrl"])["source"] == "defender_xdr"


def test_unknown_alert_shape_is_400_naming_the_expected_ones(api: httpx.Client) -> None:
    response = post_alert(api, {"hello": "world"})
    assert response.status_code == 400
    assert "azureMonitorCommonAlertSchema" in response.json()["detail"]


def test_logic_apps_http_action_async_pattern(api: httpx.Client, sim: Sim) -> None:
    """Behave as the Logic Apps poller: follow Location, obey Retry-After, stop at the first non-202."""
    user = new_user(sim, "logicapp")
    response = api.post("/api/signouts", json={"user": user["id"], "description": "playbook"})
    deadline = time.monotonic() + PIPELINE_TIMEOUT
    while response.status_code == 202:
        assert response.headers.get("Location") and response.headers.get("Retry-After")
        assert time.monotonic() < deadline, response.text
        time.sleep(float(response.headers["Retry-After"]))
        response = api.get(response.headers["Location"])
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"


def wait_for_callback(api: httpx.Client, url: str) -> dict[str, Any]:
    def outcome() -> dict[str, Any] | None:
        record = api.get(url).json()
        return record if (record.get("callback") or {}).get("state") in ("delivered", "failed") else None

    return wait_until(outcome, f"a callback outcome recorded on {url}", interval=0.2)


def test_callback_url_receives_the_finished_task(api: httpx.Client, sim: Sim, callbacks: CallbackReceiver) -> None:
    user = new_user(sim, "webhook")
    path = f"/workflows/{uuid.uuid4().hex}/callback"
    [task] = sign_out(api, user["id"], callbackUrl=callbacks.url(path)).json()["tasks"]
    record = wait_for_callback(api, task["statusUrl"])
    assert record["callback"]["state"] == "delivered"
    [posted] = callbacks.received[path]
    assert (posted["id"], posted["status"]) == (task["id"], "succeeded")


def test_failing_callback_is_recorded_and_never_changes_the_status(
    api: httpx.Client, sim: Sim, callbacks: CallbackReceiver
) -> None:
    user = new_user(sim, "webhook-down")
    path = f"/workflows/{uuid.uuid4().hex}/callback"
    callbacks.script[path] = [500]
    [task] = sign_out(api, user["id"], callbackUrl=callbacks.url(path)).json()["tasks"]
    record = wait_for_callback(api, task["statusUrl"])
    assert record["status"] == "succeeded"
    assert record["callback"] == {"state": "failed", "attempts": 4, "lastError": "HTTP 500"}
    assert len(callbacks.received[path]) == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://prod-00.westus.logic.azure.com/x",
        "https://evil.example.com/x",
        "https://127.0.0.1:1/x",
        "https://user:pw@prod-00.westus.logic.azure.com/x",
        "file:///etc/passwd",
    ],
)
def test_callback_urls_outside_the_allow_list_are_refused(api: httpx.Client, url: str) -> None:
    response = api.post("/api/signouts", json={"user": "adele.vance@contoso.com", "callbackUrl": url})
    assert response.status_code == 400
    assert [e["pointer"] for e in response.json()["errors"]] == ["/callbackUrl"]
