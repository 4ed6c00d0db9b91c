"""examples/bulk-approval-teams.json: the Logic App that asks a Teams channel to approve bulk jobs,
checked like the other examples (tests/unit/test_examples.py checks its structure): what it polls,
the card it posts, and the approve/reject calls it makes, evaluated against a job report the
service itself produces and fed to the service's own parsers and routes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.domain.principal import Principal
from shared.domain.requests import BulkRequest, parse_decision
from shared.usecases.approvals import request_job
from shared.usecases.bulk import job_report
from shared.usecases.job_queries import parse_job_query
from tests.app_functions import registered_functions
from tests.fakes import fake_runtime
from tests.unit.test_examples import Context, evaluate, find, load, workflow

BASE = "https://func-signout-abc123.azurewebsites.net"
KEY = "k" * 20  # stands in for the secure parameter's value
AUDIENCE = "5a6b7c8d-0000-4000-8000-00000000a0d1"
REQUESTER = Principal("1f1f1f1f-0000-4000-8000-000000000001", None, "Sentinel playbook")
LOOP = "For_each_waiting_job"


class RunContext(Context):
    """A run of the workflow, with the one function this Logic App adds to the evaluator's set."""

    def call(self, name: str, args: list[Any]) -> Any:
        if name == "toLower":
            return str(args[0]).lower()
        return super().call(name, args)


def definition() -> dict[str, Any]:
    return workflow(load("bulk-approval-teams.json"))["properties"]["definition"]


async def waiting_job() -> dict[str, Any]:
    """A job report as GET /api/jobs lists it: the service's own output, not a hand-written one."""
    rt = fake_runtime(bulk_approval_threshold=2)
    group = rt.graph.add_group([rt.graph.add_user(f"member{n}@contoso.com") for n in range(3)])
    job = await request_job(rt, BulkRequest(group, 'INC-42 "compromised" team\nsee ticket'), REQUESTER, roles_enforced=True)
    report, _ = await job_report(rt, job)
    assert report["state"] == "awaiting_approval"
    return {**report, "statusUrl": f"{BASE}/api/jobs/{job.id}"}


def context(job: dict[str, Any], reply: dict[str, Any] | None = None) -> RunContext:
    parameters = {"signOutApiBaseUrl": BASE, "functionKey": KEY, "apiAudience": AUDIENCE, "teamId": "t", "channelId": "c"}
    actions = {"Ask_in_Teams": {"status": "Succeeded", "outputs": {"body": reply or {}}}}
    return RunContext(parameters=parameters, items={LOOP: job}, actions=actions)


def teams_reply(decision: str, responder_id: str) -> dict[str, Any]:
    """The shape the Teams connector returns when someone submits the card."""
    return {
        "responder": {"objectId": responder_id, "userPrincipalName": "lead@contoso.com", "displayName": "SOC lead"},
        "submitActionId": decision.title(),
        "data": {"decision": decision},
        "responseTime": "2026-11-26T14:41:22.000Z",
    }


def condition(expression: dict[str, Any], run: RunContext) -> bool:
    """The workflow's condition objects (and, not, equals), operands evaluated as the engine does."""
    [(operator, operands)] = expression.items()
    if operator == "and":
        return all(condition(operand, run) for operand in operands)
    if operator == "not":
        return not condition(operands, run)
    assert operator == "equals", operator
    left, right = (evaluate(operand, run) for operand in operands)
    return bool(left == right)


def route_of(function_name: str) -> str:
    return "/api/" + registered_functions()[function_name].get_trigger().route


def test_it_polls_what_waits_for_an_approver_one_run_at_a_time() -> None:
    flow = definition()
    [trigger] = flow["triggers"].values()
    assert trigger["type"] == "Recurrence" and trigger["runtimeConfiguration"]["concurrency"]["runs"] == 1
    poll = evaluate(find(flow, "List_waiting_jobs")["inputs"], context({}))
    assert (poll["method"], poll["uri"]) == ("GET", f"{BASE}/api/jobs")
    assert urlsplit(poll["uri"]).path == route_of("list_jobs")
    assert parse_job_query(poll["queries"]).state == "awaiting_approval"
    assert poll["headers"]["x-functions-key"] == KEY and poll["authentication"] == {
        "type": "ManagedServiceIdentity",
        "audience": AUDIENCE,
    }
    assert find(flow, LOOP)["foreach"] == "@coalesce(body('List_waiting_jobs')?['jobs'], json('[]'))"


async def test_the_card_shows_the_job_and_offers_exactly_approve_and_reject() -> None:
    flow = definition()
    job = await waiting_job()
    run = context(job)
    card = evaluate(find(flow, "Approval_card")["inputs"], run)
    run.actions["Approval_card"] = {"status": "Succeeded", "outputs": card}
    ask = find(flow, "Ask_in_Teams")
    assert ask["type"] == "ApiConnectionWebhook"
    assert (
        ask["inputs"]["path"]
        == "/v1.0/teams/conversation/gatherinput/poster/Flow bot/location/@{encodeURIComponent('Channel')}/$subscriptions"
    )
    assert ask["inputs"]["host"]["connection"]["name"] == "@parameters('$connections')['teams']['connectionId']"
    posted = evaluate(ask["inputs"]["body"], run)
    assert posted["notificationUrl"].startswith("https://") and posted["body"]["recipient"] == {"groupId": "t", "channelId": "c"}
    shown = json.loads(posted["body"]["messageBody"])  # a description with quotes and a line break stays valid JSON
    assert shown["type"] == "AdaptiveCard"
    facts = {fact["title"]: fact["value"] for block in shown["body"] if block["type"] == "FactSet" for fact in block["facts"]}
    assert facts["Users"] == "3" and facts["Target"] == f"group {job['target']['group']}" and facts["Job"] == job["id"]
    assert facts["Requested by"] == "Sentinel playbook" and facts["Reason"] == job["description"]
    assert facts["Expires at"] == job["approvalExpiresAt"]
    assert {action["data"]["decision"] for action in shown["actions"]} == {"approve", "reject"}


@pytest.mark.parametrize(
    ("decision", "responder", "called"),
    [
        ("approve", "2e2e2e2e-0000-4000-8000-000000000002", "Approve_job"),
        ("approve", REQUESTER.object_id.upper() if REQUESTER.object_id else "", None),  # the requester: passed on to nobody
        ("reject", "2e2e2e2e-0000-4000-8000-000000000002", "Reject_job"),
        ("reject", REQUESTER.object_id or "", "Reject_job"),  # withdrawing one's own request is fine
    ],
)
async def test_the_answer_becomes_an_approve_or_reject_call_the_service_accepts(
    decision: str, responder: str, called: str | None
) -> None:
    flow = definition()
    job = await waiting_job()
    run = context(job, teams_reply(decision, responder))
    gate = find(flow, "Approved_by_someone_else")
    approves = condition(gate["expression"], run)
    rejects = not approves and condition(gate["else"]["actions"]["Rejected"]["expression"], run)
    made = "Approve_job" if approves else "Reject_job" if rejects else None
    assert made == called
    if made is None:
        return
    action = find(flow, made)
    request = evaluate(action["inputs"], run)
    verb = "approve" if made == "Approve_job" else "reject"
    assert request["method"] == "POST" and request["uri"] == f"{BASE}/api/jobs/{job['id']}/{verb}"
    assert urlsplit(request["uri"]).path == route_of(f"{verb}_job").replace("{id}", job["id"])
    assert request["headers"] == {"Content-Type": "application/json", "x-functions-key": KEY}
    assert request["authentication"] == {"type": "ManagedServiceIdentity", "audience": AUDIENCE}
    comment = parse_decision(request["body"])  # the service's own validation of the body
    assert comment is not None and "lead@contoso.com" in comment and responder in comment
    assert action["operationOptions"] == "DisableAsyncPattern" and action["runtimeConfiguration"]["secureData"]["properties"] == [
        "inputs"
    ]


def test_the_card_waits_no_longer_than_an_approval_request_lives() -> None:
    from shared.settings import Settings

    timeout = find(definition(), "Ask_in_Teams")["limit"]["timeout"]
    assert timeout == f"PT{Settings().bulk_approval_ttl_seconds // 3600}H"
