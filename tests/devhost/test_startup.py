"""The devhost refuses configurations the real host would, or that would reach real Azure."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import ROOT, Sample


def refusal(s: Sample, **env: str | None) -> str:
    for name, value in env.items():
        if value is None:
            s.env.pop(name, None)
        else:
            s.env[name] = value
    done = subprocess.run(s.host.command(), check=False, cwd=ROOT, env=s.env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "devhost ready" not in done.stdout
    return done.stderr


# End to end only what matters most; test_units.py covers the remaining checks in-process.
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDENTITY_ENDPOINT": None}, "IDENTITY_ENDPOINT and IDENTITY_HEADER"),
        ({"IDENTITY_ENDPOINT": "http://169.254.169.254/metadata"}, "must be on this machine"),
        ({"SAMPLE_QUEUE": None}, "app setting 'SAMPLE_QUEUE'"),  # as indexing fails in Azure
    ],
)
def test_refuses_to_start(sample, env: dict, message: str) -> None:
    assert message in refusal(sample(start=False), **env)


def test_local_dev_credential_opt_in_replaces_the_identity_endpoint(sample) -> None:
    s: Sample = sample(env={"LOCAL_DEV_CREDENTIAL": "1"}, start=False)
    del s.env["IDENTITY_ENDPOINT"], s.env["IDENTITY_HEADER"]
    s.host.start()
