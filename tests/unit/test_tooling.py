"""The tooling stays in step: .ci/run runs what `make ci` runs, and pre-commit runs the pinned ruff."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def make_ci_steps() -> list[str]:
    recipe = ROOT.joinpath("Makefile").read_text().split("\nci:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\t\$\(MAKE\) (\S+)$", recipe, re.MULTILINE)


def test_ci_runs_lint_infra_lint_typecheck_audit_then_the_tests() -> None:
    assert make_ci_steps() == ["lint-infra", "lint", "typecheck", "audit-ci", "test"]


def test_ci_run_calls_the_steps_of_make_ci_in_order() -> None:
    script = ROOT.joinpath(".ci", "run").read_text()
    assert re.findall(r"^make (\S+)$", script, re.MULTILINE) == make_ci_steps()
    assert "set -euo pipefail" in script  # a failing step fails the run


def test_pre_commit_runs_the_ruff_version_pinned_for_make_lint() -> None:
    pinned = re.search(r"^ruff==(\S+)$", ROOT.joinpath("requirements-dev.txt").read_text(), re.MULTILINE)
    config = ROOT.joinpath(".pre-commit-config.yaml").read_text()
    assert pinned is not None
    assert f"ruff-pre-commit\n    rev: v{pinned[1]}\n" in config
