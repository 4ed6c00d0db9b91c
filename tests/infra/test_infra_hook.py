"""infra/hooks/postprovision.sh against a fake `az` (no Azure, no network).

The fake answers the three look-ups the script makes (Graph's service principal id, Graph's
application roles, the identity's current assignments) and records every call, so the tests
see exactly which app roles the script would grant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from infra_helpers import INFRA

HOOK = INFRA / "hooks" / "postprovision.sh"
PRINCIPAL = "11111111-2222-3333-4444-555555555555"
GRAPH_SP = "99999999-0000-0000-0000-000000000001"
# Role ids of the fake Graph service principal (real ids differ; the script looks them up).
ROLES = {
    "User.RevokeSessions.All": "aaaaaaaa-0000-0000-0000-000000000001",
    "User.Read.All": "aaaaaaaa-0000-0000-0000-000000000002",
    "GroupMember.Read.All": "aaaaaaaa-0000-0000-0000-000000000003",
    "User.ReadWrite.All": "aaaaaaaa-0000-0000-0000-000000000004",
    "Directory.Read.All": "aaaaaaaa-0000-0000-0000-000000000005",
}
WANTED = ["User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All"]

FAKE_AZ = r"""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
roles = json.loads(os.environ["FAKE_AZ_ROLES"])
def opt(name):
    return args[args.index(name) + 1] if name in args else None
if args[:3] == ["ad", "sp", "show"]:
    assert opt("--id") == "00000003-0000-0000-c000-000000000000", args
    if opt("--query") == "id":
        print(os.environ["FAKE_AZ_GRAPH_SP"])
    else:
        assert "allowedMemberTypes" in opt("--query"), args
        for value, role_id in roles.items():
            print(f"{role_id}\t{value}")
    sys.exit(0)
if args[:1] == ["rest"]:
    method, url = opt("--method"), opt("--url")
    assert url.startswith(os.environ["FAKE_AZ_GRAPH"] + "/v1.0/servicePrincipals/" + os.environ["FAKE_AZ_PRINCIPAL"]), url
    if method == "get":
        for role_id in os.environ.get("FAKE_AZ_ASSIGNED", "").split():
            print(role_id)
        sys.exit(0)
    if method == "post":
        body = json.loads(opt("--body"))
        assert body["principalId"] == os.environ["FAKE_AZ_PRINCIPAL"], body
        assert body["resourceId"] == os.environ["FAKE_AZ_GRAPH_SP"], body
        sys.exit(int(os.environ.get("FAKE_AZ_POST_RC", "0")))
sys.exit(f"fake az: unexpected call {args}")
"""

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")


@pytest.fixture
def fake_az(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(f"#!{sys.executable}\n{FAKE_AZ}")
    script.chmod(0o755)
    log = tmp_path / "az.log"
    log.touch()

    def run(
        *args: str,
        assigned: list[str] = (),
        granted_by_template: bool = False,
        post_rc: int = 0,
        graph: str = "https://graph.microsoft.com",
        principal: str | None = PRINCIPAL,
    ):
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AZ_LOG": str(log),
            "FAKE_AZ_ROLES": json.dumps(ROLES),
            "FAKE_AZ_GRAPH_SP": GRAPH_SP,
            "FAKE_AZ_GRAPH": graph,
            "FAKE_AZ_PRINCIPAL": PRINCIPAL,
            "FAKE_AZ_ASSIGNED": " ".join(ROLES[name] for name in assigned),
            "FAKE_AZ_POST_RC": str(post_rc),
            "GRAPH_ENDPOINT": graph + "/",
            "GRAPH_PERMISSIONS_GRANTED_BY_TEMPLATE": "true" if granted_by_template else "false",
        }
        if principal:
            env["MANAGED_IDENTITY_PRINCIPAL_ID"] = principal
        result = subprocess.run(["sh", str(HOOK), *args], check=False, env=env, capture_output=True, text=True, timeout=300)  # noqa: S607 - sh from PATH, as azd runs it
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        log.write_text("")
        posted = [json.loads(call[call.index("--body") + 1])["appRoleId"] for call in calls if "post" in call]
        granted = [name for name, role_id in ROLES.items() if role_id in posted]
        return result, granted

    return run


def test_grants_exactly_the_three_permissions(fake_az):
    result, granted = fake_az()
    assert result.returncode == 0, result.stderr
    assert sorted(granted) == sorted(WANTED)
    for role in WANTED:
        assert f"granted {role}" in result.stdout


def test_grants_only_what_is_missing(fake_az):
    result, granted = fake_az(assigned=["User.Read.All"])
    assert result.returncode == 0, result.stderr
    assert sorted(granted) == ["GroupMember.Read.All", "User.RevokeSessions.All"]


def test_verify_mode_when_the_template_granted_them(fake_az):
    result, granted = fake_az(assigned=WANTED, granted_by_template=True)
    assert result.returncode == 0, result.stderr
    assert granted == []
    assert "(verify)" in result.stdout


def test_verify_reports_missing_without_granting(fake_az):
    result, granted = fake_az("--verify", assigned=["User.Read.All"])
    assert result.returncode == 1
    assert granted == []
    assert "MISSING User.RevokeSessions.All" in result.stderr
    assert "MISSING GroupMember.Read.All" in result.stderr


def test_flags_broader_permissions(fake_az):
    result, _granted = fake_az(assigned=[*WANTED, "User.ReadWrite.All"], granted_by_template=True)
    assert result.returncode == 1
    assert "EXTRA   User.ReadWrite.All" in result.stderr


def test_failed_grant_names_the_required_entra_role(fake_az):
    result, _ = fake_az(post_rc=1)
    assert result.returncode == 1
    assert "Privileged Role Administrator" in result.stderr


def test_sovereign_cloud_graph_endpoint(fake_az):
    result, granted = fake_az(graph="https://graph.microsoft.us")
    assert result.returncode == 0, result.stderr
    assert sorted(granted) == sorted(WANTED)


def test_needs_the_principal_id(fake_az):
    result, granted = fake_az(principal=None)
    assert result.returncode == 2
    assert "MANAGED_IDENTITY_PRINCIPAL_ID" in result.stderr
    assert granted == []


def test_script_is_posix_sh():
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            subprocess.run([shell, "-n", str(HOOK)], check=True)
