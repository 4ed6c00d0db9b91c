"""Helpers for the infrastructure tests: Bicep files parsed to JSON with pycep-parser.

pycep-parser (0.7.1, in requirements-dev.txt) turns a .bicep file into plain JSON: literals
and identifiers both come back as strings, expressions as nested {"operator": ...} /
{"function": ...} objects. The helpers here read that JSON; they evaluate nothing.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
GRAPH_DIR = INFRA / "graph"

if str(REPO_ROOT) not in sys.path:  # `from shared.settings import SETTING_NAMES`
    sys.path.insert(0, str(REPO_ROOT))

try:
    from pycep import BicepParser
except ImportError as exc:  # pragma: no cover - a missing dev dependency must be loud
    raise ImportError("tests/infra need pycep-parser==0.7.1 (requirements-dev.txt)") from exc


@cache
def _parser() -> BicepParser:
    return BicepParser()


@cache
def parse(relative: str) -> dict[str, Any]:
    """Parsed JSON of infra/<relative> (cached: lark parsing is the slow part)."""
    return _parser().parse(file_path=INFRA / relative)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def rel(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource's own properties, unwrapping `[for ...]` loops and `if (...)` conditions."""
    config = resource["config"]
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config) and "config" in config:
        config = config["config"]
    return config


def resources_of_type(parsed: dict[str, Any], resource_type: str, *, existing: bool = False) -> dict[str, dict]:
    return {
        symbol: resource
        for symbol, resource in (parsed.get("resources") or {}).items()
        if resource["type"] == resource_type and bool(resource.get("existing")) == existing
    }


def one_resource(parsed: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(parsed, resource_type)
    assert len(found) == 1, f"expected exactly one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def param_default(parsed: dict[str, Any], name: str) -> Any:
    params = parsed.get("parameters") or {}
    assert name in params, f"parameter {name} not declared"
    return params[name]["default"]


def variable(parsed: dict[str, Any], name: str) -> Any:
    variables = parsed.get("variables") or {}
    assert name in variables, f"variable {name} not declared"
    return variables[name]["value"]


def accessor_path(expression: Any) -> list[str] | None:
    """`a.b.c` (nested property_accessor operators) -> ["a", "b", "c"]; anything else -> None."""
    if isinstance(expression, str):
        return [expression]
    if isinstance(expression, dict) and expression.get("operator", {}).get("type") == "property_accessor":
        operands = expression["operator"]["operands"]
        left, right = accessor_path(operands["operand_1"]), accessor_path(operands["operand_2"])
        if left is None or right is None:
            return None
        return left + right
    return None


def walk(node: Any):
    """Every dict, list and scalar inside a parsed document."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
