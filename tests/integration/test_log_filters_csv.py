"""The remediation log as an incident responder queries it, on the dev host with Azurite and the
Graph simulator: by job, source and error category, as CSV page by page, and a job's progress."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pytest

from tests.integration.helpers import Sim, new_user, sign_out, wait_for_terminal

pytestmark = pytest.mark.integration


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def test_a_job_s_tasks_by_job_and_source_as_csv_pages_and_its_progress(api: httpx.Client, sim: Sim) -> None:
    members = [new_user(sim, f"csv{n}") for n in range(3)]
    group = str(uuid.uuid4())
    sim.http.post("/_sim/groups", json=[{"id": group, "members": [m["id"] for m in members]}]).raise_for_status()
    created = api.post("/api/signouts", json={"group": group, "description": "=cmd|' /C calc'!A0"})
    assert created.status_code == 202, created.text
    job = wait_for_terminal(api, created.headers["Location"])
    assert (job["total"], job["done"], job["percent"], job.get("estimatedFinish")) == (3, 3, 100, None)

    listed = api.get("/api/signouts", params={"jobId": job["id"], "source": "bulk"}).json()["tasks"]
    assert sorted(task["user"] for task in listed) == sorted(m["id"] for m in members)

    first = api.get("/api/signouts", params={"jobId": job["id"], "format": "csv", "top": "2"})
    link = first.headers["link"]
    assert link.endswith('>; rel="next"')
    rest = api.get(link[1 : link.index(">")])
    rows = csv_rows(first) + csv_rows(rest)
    assert sorted(row["user"] for row in rows) == sorted(m["id"] for m in members)
    assert {row["description"] for row in rows} == {"'=cmd|' /C calc'!A0"}, "a spreadsheet reads text, not a formula"
    assert {row["status"] for row in rows} == {"succeeded"} and {row["jobId"] for row in rows} == {job["id"]}


def test_a_failed_task_is_found_by_its_error_category_with_its_fix(api: httpx.Client) -> None:
    missing = f"nobody-{uuid.uuid4().hex[:8]}@contoso.com"  # the simulator does not know this user
    task = wait_for_terminal(api, sign_out(api, missing).headers["Location"])
    assert task["status"] == "failed"
    category = task["error"]["category"]
    found = api.get("/api/signouts", params={"user": missing, "category": category}).json()["tasks"]
    assert [t["id"] for t in found] == [task["id"]]
    assert (
        api.get(
            "/api/signouts", params={"user": missing, "category": "gave_up" if category != "gave_up" else "cancelled"}
        ).json()["tasks"]
        == []
    )
    [row] = csv_rows(api.get("/api/signouts", params={"user": missing}, headers={"accept": "text/csv"}))
    assert (row["errorCategory"], row["errorMessage"]) == (category, task["error"]["message"])


def test_bad_filters_are_400_problems(api: httpx.Client) -> None:
    for params in ({"jobId": "x"}, {"source": "mail"}, {"requestedBy": "a@b.c"}, {"category": "x"}, {"format": "xls"}):
        response = api.get("/api/signouts", params=params)
        assert response.status_code == 400 and response.headers["content-type"].startswith("application/problem+json")
