"""The architecture, kept true by tests: layers import only downwards, every route declares its
app role once, and every module says what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.triggers.auth import APPROVE_ROLE, CREATE_ROLE, READ_ROLE
from tests.app_functions import registered_functions

SHARED = Path(__file__).parents[2] / "shared"
# What each layer may import from the project's own package (besides itself).
ALLOWED = {
    "domain": {"shared.domain", "shared.settings"},
    "usecases": {"shared.usecases", "shared.domain", "shared.settings"},
    "adapters": {"shared.adapters", "shared.domain", "shared.settings", "shared.usecases.ports"},
    "triggers": {"shared.triggers", "shared.usecases", "shared.domain", "shared.settings", "shared.runtime"},
}
ROUTE_ROLES = {
    "create_signouts": CREATE_ROLE,
    "get_signout": READ_ROLE,
    "list_signouts": READ_ROLE,
    "get_job_status": READ_ROLE,
    "cancel_job_request": CREATE_ROLE,
    "approve_job": APPROVE_ROLE,
    "reject_job": APPROVE_ROLE,
    "list_jobs": READ_ROLE,
    "ingest_alert": CREATE_ROLE,
    "get_openapi": READ_ROLE,
    "health": None,
    "get_console": READ_ROLE,
    "get_console_asset": None,  # the console's script and style sheet: no data
}


def project_imports(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    return {name for name in imported if name == "shared" or name.startswith("shared.")}


def modules(layer: str) -> list[Path]:
    return sorted((SHARED / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", ALLOWED)
def test_layers_import_only_downwards(layer: str) -> None:
    allowed = ALLOWED[layer]
    wrong = {
        f"{path.relative_to(SHARED.parent)}: {name}"
        for path in modules(layer)
        for name in project_imports(path)
        if not any(name == prefix or name.startswith(f"{prefix}.") for prefix in allowed)
        and not any(prefix.startswith(f"{name}.") for prefix in allowed)  # `from shared.usecases import ports`
    }
    assert not wrong, f"{layer}/ may import only {sorted(allowed)}"


def test_every_route_declares_its_role_once() -> None:
    declared = {
        name: function.get_user_function().required_role
        for name, function in registered_functions().items()
        if function.get_trigger().type == "httpTrigger"
    }
    assert declared == ROUTE_ROLES


@pytest.mark.parametrize("path", sorted(SHARED.rglob("*.py")), ids=lambda path: str(path.relative_to(SHARED)))
def test_every_module_opens_with_a_docstring(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), "say what belongs here and what must not"
