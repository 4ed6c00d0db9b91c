"""examples/: the ARM templates SOC engineers copy, checked as far as this machine can.

No Azure here, so the templates cannot be deployed. Instead:
- every template is checked structurally (ARM template keys, parameter and variable references,
  no literal secrets);
- every Logic Apps workflow definition is checked like the designer would (runAfter points at
  sibling actions, every action/variable/parameter/connection an expression names exists), and
  every expression in it is parsed by a small evaluator of the workflow definition language;
- the expressions that build what is sent to the service are *evaluated* against Microsoft's
  sample payloads (tests/fixtures/alerts) and the result is fed to the service's own parsers.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator

from shared.domain.alerts import DEFAULT_USER_DIMENSIONS
from shared.domain.identifiers import parse_user
from shared.domain.messages import DirectRequest, decode_message
from shared.domain.requests import parse_signout_request
from shared.triggers import http_api as api
from tests.app_functions import registered_functions

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "alerts"
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
WDL_SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
TEMPLATES = ("action-group.json", "sentinel-playbook.json", "logic-app-queue.json", "bulk-approval-teams.json")
SECURE_TYPES = {"securestring", "secureobject"}
SECRET_NAME = re.compile(r"key|secret|password|token|credential|connectionstring|sas", re.IGNORECASE)
# Literal secrets: storage/SAS connection strings, a code= or sig= followed by a value, key-like blobs.
SECRET_TEXT = [
    re.compile(r"AccountKey=|SharedAccessSignature=|SharedAccessKey=", re.IGNORECASE),
    re.compile(r"[?&](code|sig)=(?![{\[@'])", re.IGNORECASE),
    re.compile(r"[A-Za-z0-9_\-]{40,}={0,2}"),
    re.compile(r"[A-Za-z0-9+/]{38,}={1,2}"),
]
RUN_STATUSES = {"Succeeded", "Failed", "Skipped", "TimedOut"}
ACTION_TYPES = {
    "ApiConnection",
    "ApiConnectionWebhook",
    "Http",
    "HttpWebhook",
    "Compose",
    "Select",
    "Query",
    "If",
    "Foreach",
    "Until",
    "Scope",
    "Switch",
    "InitializeVariable",
    "SetVariable",
    "AppendToArrayVariable",
    "Terminate",
    "Response",
    "ParseJson",
    "Join",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}/{index}")
    elif isinstance(node, str):
        yield path, node


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [resource for resource in template["resources"] if resource["type"].lower() == kind.lower()]


def workflow(template: dict[str, Any]) -> dict[str, Any]:
    (resource,) = resources(template, "Microsoft.Logic/workflows")
    return resource


# --- a small evaluator for the Logic Apps workflow definition language ------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)|(?P<op>\?|\[|\]|\(|\)|,|\.))"
)


class ExpressionError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"cannot read {text[position : position + 30]!r} in {text!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        elif kind == "num":
            value = float(value) if "." in value else int(value)
        tokens.append((kind, value))
    return tokens


class _Parser:
    """expr := primary ('?'? '[' expr ']' | '.' name)* ; primary := literal | name '(' args ')' | true/false/null"""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.index = text, _tokens(text), 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token != ("op", value)):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.index += 1
        return token

    def parse(self) -> tuple:
        node = self.expression()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()} in {self.text!r}")
        return node

    def expression(self) -> tuple:
        kind, value = self.take()
        if kind in ("str", "num"):
            node: tuple = ("lit", value)
        elif kind == "name" and value in ("true", "false", "null") and self.peek() != ("op", "("):
            node = ("lit", {"true": True, "false": False, "null": None}[value])
        elif kind == "name":
            self.take("(")
            args = []
            if self.peek() != ("op", ")"):
                args.append(self.expression())
                while self.peek() == ("op", ","):
                    self.take(",")
                    args.append(self.expression())
            self.take(")")
            node = ("call", value, args)
        else:
            raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
        while self.peek() in (("op", "?"), ("op", "["), ("op", ".")):
            if self.peek() == ("op", "."):
                self.take(".")
                node = ("index", node, ("lit", self.take()[1]), False)
                continue
            safe = self.peek() == ("op", "?")
            if safe:
                self.take("?")
            self.take("[")
            node = ("index", node, self.expression(), safe)
            self.take("]")
        return node


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _concat(*parts: Any) -> str:
    if any(part is None for part in parts):
        raise ExpressionError("concat() of null")
    return "".join(_to_text(part) for part in parts)


def _empty(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _union(*lists: list) -> list:
    merged: list = []
    for item in (item for items in lists for item in items):
        if item not in merged:
            merged.append(item)
    return merged


def _need(name: str, value: Any) -> Any:
    if value is None:
        raise ExpressionError(f"{name}: nothing there in this context")
    return value


class Context:
    """What a run would see: the trigger body, action results, loop items, variables, parameters."""

    def __init__(self, **values: Any) -> None:
        self.trigger_body = values.get("trigger_body")
        self.actions: dict[str, dict[str, Any]] = values.get("actions", {})  # name -> {"status", "outputs"}
        self.items: dict[str, Any] = values.get("items", {})  # foreach name -> current item
        self.item = values.get("item")
        self.variables: dict[str, Any] = values.get("variables", {})
        self.parameters: dict[str, Any] = values.get("parameters", {})

    def call(self, name: str, args: list[Any]) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "triggerBody": lambda: self.trigger_body,
            "body": lambda action: (_need(action, self.actions.get(action)).get("outputs") or {}).get("body"),
            "outputs": lambda action: _need(action, self.actions.get(action)).get("outputs"),
            "actions": lambda action: self.actions.get(action),
            "items": lambda loop: _need(loop, self.items.get(loop)),
            "item": lambda: self.item,
            "variables": lambda name: _need(name, self.variables.get(name)),
            "parameters": lambda name: self.parameters[name],
            "workflow": lambda: {"name": "Force-SignOut-Incident-Accounts", "run": {"name": "08584712345678901234567890CU00"}},
            "listCallbackUrl": lambda: "https://prod-00.westeurope.logic.azure.com/workflows/x/triggers/t/run",
            "if": lambda condition, yes, no: yes if condition else no,
            "not": lambda value: not value,
            "and": lambda *values: all(values),
            "or": lambda *values: any(values),
            "equals": lambda a, b: a == b,
            "greater": lambda a, b: a > b,
            "empty": _empty,
            "coalesce": lambda *values: next((value for value in values if value is not None), None),
            "concat": _concat,
            "string": lambda value: _to_text(_need("string() of null", value)),
            "json": json.loads,
            "length": len,
            "union": _union,
            "join": lambda items, separator: separator.join(_to_text(item) for item in items),
            "take": lambda value, count: value[:count],
            "sub": lambda a, b: a - b,
            "encodeURIComponent": lambda value: quote(_to_text(value), safe=""),
        }
        if name not in functions:
            raise ExpressionError(f"{name}() is not a function this evaluator knows")
        return functions[name](*args)


def _evaluate(node: tuple, context: Context) -> Any:
    if node[0] == "lit":
        return node[1]
    if node[0] == "call":  # every argument is evaluated, if()'s unused branch too: expressions must be null-safe
        return context.call(node[1], [_evaluate(arg, context) for arg in node[2]])
    _, target, key, safe = node
    container = _evaluate(target, context)
    key = _evaluate(key, context)
    if container is None:
        if safe:
            return None
        raise ExpressionError(f"[{key!r}] of null")
    if isinstance(container, dict):
        if key not in container and not safe:
            raise ExpressionError(f"no property {key!r}")
        return container.get(key)
    if isinstance(container, list) and isinstance(key, int):
        return container[key]
    raise ExpressionError(f"[{key!r}] of a {type(container).__name__}")  # the engine refuses property selection on strings


def _interpolations(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, expression) of each @{...} in a string, respecting quoted strings inside."""
    position = 0
    while (start := text.find("@{", position)) != -1:
        if start > 0 and text[start - 1] == "@":  # @@{ is an escaped literal
            position = start + 2
            continue
        index, depth, quoted = start + 2, 1, False
        while index < len(text):
            char = text[index]
            if char == "'":
                quoted = not quoted
            elif not quoted and char == "{":
                depth += 1
            elif not quoted and char == "}":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        if depth:
            raise ExpressionError(f"unclosed @{{ in {text!r}")
        yield start, index + 1, text[start + 2 : index]
        position = index + 1


def expressions(text: str) -> list[str]:
    """The expressions in a workflow string: all of it after a leading @, or each @{...}."""
    if text.startswith("@") and not text.startswith(("@{", "@@")):
        return [text[1:]]
    return [expression for _, _, expression in _interpolations(text)]


def evaluate(value: Any, context: Context) -> Any:
    """A workflow value as the engine would produce it: expressions evaluated, recursively."""
    if isinstance(value, dict):
        return {key: evaluate(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, context) for item in value]
    if not isinstance(value, str):
        return value
    if value.startswith("@") and not value.startswith(("@{", "@@")):
        return _evaluate(_Parser(value[1:]).parse(), context)
    pieces, position = [], 0
    for start, end, expression in _interpolations(value):
        pieces += [value[position:start], _to_text(_evaluate(_Parser(expression).parse(), context))]
        position = end
    return "".join(pieces) + value[position:]


def calls(node: tuple) -> Iterator[tuple[str, list[tuple]]]:
    if node[0] == "call":
        yield node[1], node[2]
        for arg in node[2]:
            yield from calls(arg)
    elif node[0] == "index":
        yield from calls(node[1])
        yield from calls(node[2])


# --- workflow structure -------------------------------------------------------------------------


def all_actions(
    actions: dict[str, Any], loops: tuple[str, ...] = ()
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...]]]:
    """(name, action, sibling actions, enclosing Foreach names) for every action, nested ones too."""
    for name, action in actions.items():
        yield name, action, actions, loops
        inner = loops + ((name,) if action["type"] == "Foreach" else ())
        for scope in (action.get("actions"), (action.get("else") or {}).get("actions")):
            if scope:
                yield from all_actions(scope, inner)
        for case in (action.get("cases") or {}).values():
            yield from all_actions(case.get("actions", {}), inner)


def check_workflow(template: dict[str, Any]) -> None:
    resource = workflow(template)
    definition = resource["properties"]["definition"]
    assert definition["$schema"] == WDL_SCHEMA
    assert definition["contentVersion"] and len(definition["triggers"]) == 1
    names = {name for name, *_ in all_actions(definition["actions"])}
    trigger_names = set(definition["triggers"])
    assert not names & trigger_names
    declared_parameters = set(definition.get("parameters", {}))
    assert set(resource["properties"].get("parameters", {})) <= declared_parameters, "values for undeclared parameters"
    connections = set(resource["properties"]["parameters"].get("$connections", {}).get("value", {}))
    variables = {
        variable["name"]
        for action in definition["actions"].values()  # InitializeVariable is only allowed at the top level
        if action["type"] == "InitializeVariable"
        for variable in action["inputs"]["variables"]
    }
    for name, action, siblings, loops in all_actions(definition["actions"]):
        assert action["type"] in ACTION_TYPES, f"{name}: unknown action type {action['type']}"
        for previous, statuses in action.get("runAfter", {}).items():
            assert previous in siblings and previous != name, f"{name} runs after {previous}, which is not a sibling action"
            assert set(statuses) <= RUN_STATUSES and statuses, f"{name}: runAfter statuses {statuses}"
        own = {key: value for key, value in action.items() if key not in ("actions", "else", "cases", "description")}
        for where, text in strings(own, name):
            for expression in expressions(text):
                for function, args in calls(_Parser(expression).parse()):
                    literal = args[0][1] if args and args[0][0] == "lit" else None
                    if function in ("body", "outputs", "actions"):
                        assert literal in names, f"{where}: {function}('{literal}') names no action"
                    elif function == "items":
                        assert literal in loops, f"{where}: items('{literal}') outside that Foreach"
                    elif function == "item":
                        assert action["type"] in ("Select", "Query") or loops, f"{where}: item() outside Select/Query"
                    elif function == "variables":
                        assert literal in variables, f"{where}: variable '{literal}' is never initialized"
                    elif function == "parameters":
                        assert literal in declared_parameters, f"{where}: parameter '{literal}' is not declared"
    for name, step in [
        *definition["triggers"].items(),
        *((name, action) for name, action, *_ in all_actions(definition["actions"])),
    ]:
        inputs = step.get("inputs")
        connection = inputs.get("host", {}).get("connection", {}).get("name") if isinstance(inputs, dict) else None
        if connection:
            (key,) = re.findall(r"^@parameters\('\$connections'\)\['([^']+)'\]\['connectionId'\]$", connection)
            assert key in connections, f"{name}: connection {key} is not in $connections"
    for trigger in definition["triggers"].values():
        for _, text in strings(trigger):
            for expression in expressions(text):
                _Parser(expression).parse()


def arm_expressions(template: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for where, text in strings(template):
        if text.startswith("[") and not text.startswith("[["):
            yield where, text


def check_arm_template(template: dict[str, Any]) -> None:
    assert template["$schema"] == ARM_SCHEMA
    assert template["contentVersion"] == "1.0.0.0"
    assert isinstance(template["parameters"], dict) and template["resources"]
    for resource in template["resources"]:
        assert {"type", "apiVersion", "name"} <= set(resource), resource.get("name")
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", resource["apiVersion"])
    declared = set(template["parameters"])
    variables = set(template.get("variables", {}))
    for where, text in arm_expressions(template):
        assert text.endswith("]"), f"{where}: ARM expression not closed"
        body = re.sub(r"'(?:[^']|'')*'", "''", text[1:-1])
        assert body.count("(") == body.count(")"), f"{where}: unbalanced parentheses"
        for name in re.findall(r"parameters\('([^']+)'\)", text):
            assert name in declared, f"{where}: parameters('{name}') is not declared"
        for name in re.findall(r"variables\('([^']+)'\)", text):
            assert name in variables, f"{where}: variables('{name}') is not declared"
    for name in declared:
        assert f"parameters('{name}')" in json.dumps(template), f"parameter {name} is never used"


def check_no_literal_secrets(template: dict[str, Any]) -> None:
    secure = set()
    for name, parameter in template["parameters"].items():
        if parameter["type"].lower() in SECURE_TYPES:
            secure.add(name)
            assert parameter.get("defaultValue", "") in ("", {}), f"{name}: a secure parameter with a default value"
        elif SECRET_NAME.search(name):
            raise AssertionError(f"parameter {name} looks like a secret but is {parameter['type']}, not securestring")
    for where, text in strings(template):
        for pattern in SECRET_TEXT:
            assert not pattern.search(text), f"{where}: looks like a literal secret ({pattern.pattern}): {text[:80]!r}"
    for resource in resources(template, "Microsoft.Logic/workflows"):
        definition = resource["properties"]["definition"]
        for name, parameter in definition.get("parameters", {}).items():
            value = resource["properties"].get("parameters", {}).get(name, {}).get("value")
            if parameter["type"].lower() in SECURE_TYPES:
                assert parameter.get("defaultValue", "") in ("", {}), f"workflow parameter {name} has a default"
                assert re.fullmatch(r"\[parameters\('([^']+)'\)\]", value or "") and value[13:-3] in secure, (
                    f"workflow parameter {name} must come from a securestring template parameter"
                )
            elif SECRET_NAME.search(name):
                raise AssertionError(f"workflow parameter {name} looks like a secret but is {parameter['type']}")


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_is_a_valid_arm_template_without_literal_secrets(name: str) -> None:
    template = load(name)
    check_arm_template(template)
    check_no_literal_secrets(template)


@pytest.mark.parametrize("name", ["sentinel-playbook.json", "logic-app-queue.json", "bulk-approval-teams.json"])
def test_workflow_definition_is_consistent(name: str) -> None:
    check_workflow(load(name))


def test_the_checks_catch_mistakes() -> None:
    """The structural checks above are only worth something if they fail on broken templates."""
    playbook = load("sentinel-playbook.json")
    broken = copy.deepcopy(playbook)
    workflow(broken)["properties"]["definition"]["actions"]["Users"]["runAfter"] = {"No_such_action": ["Succeeded"]}
    with pytest.raises(AssertionError, match="not a sibling"):
        check_workflow(broken)
    broken = copy.deepcopy(playbook)
    workflow(broken)["properties"]["definition"]["actions"]["Users"]["inputs"] = "@union(body('Nope'), body('Nope'))"
    with pytest.raises(AssertionError, match="names no action"):
        check_workflow(broken)
    broken = copy.deepcopy(playbook)
    workflow(broken)["properties"]["definition"]["actions"]["Users"]["inputs"] = "@union(body('Filter_usable_users')"
    with pytest.raises(ExpressionError):
        check_workflow(broken)
    broken = copy.deepcopy(playbook)
    broken["parameters"]["functionKey"] = {"type": "string"}
    with pytest.raises(AssertionError, match="securestring"):
        check_no_literal_secrets(broken)
    broken = copy.deepcopy(load("action-group.json"))
    broken["resources"][1]["properties"]["webhookReceivers"][0]["serviceUri"] = (
        "https://app.azurewebsites.net/api/alerts?code=" + "Ab1_" * 14 + "=="
    )
    with pytest.raises(AssertionError, match="literal secret"):
        check_no_literal_secrets(broken)


# --- action group + log search alert rule ------------------------------------------------------


def test_action_group_azure_function_receiver() -> None:
    template = load("action-group.json")
    groups = resources(template, "Microsoft.Insights/actionGroups")
    receivers = [r for group in groups for r in group["properties"].get("azureFunctionReceivers", [])]
    (receiver,) = receivers
    assert receiver["useCommonAlertSchema"] is True
    assert receiver["functionAppResourceId"] == "[parameters('functionAppResourceId')]"
    function_name = template["variables"]["ingestFunctionName"]
    assert receiver["functionName"] == "[variables('ingestFunctionName')]" and function_name == "ingest_alert"
    host = r"reference\(parameters\('functionAppResourceId'\), '[\d-]+'\)\.defaultHostName"
    assert re.fullmatch(rf"\[format\('https://\{{0\}}/api/alerts', {host}\)\]", receiver["httpTriggerUrl"])
    function = registered_functions().get(function_name)
    assert function is not None, f"the action group calls function {function_name!r}, which function_app does not register"
    trigger = function.get_trigger()
    assert trigger.route == "alerts" and {str(getattr(m, "value", m)).upper() for m in trigger.methods} == {"POST"}
    for group in groups:
        assert len(group["properties"]["groupShortName"]) <= 12 or group["properties"]["groupShortName"].startswith("[")
        assert group["location"] == "Global"


def test_action_group_webhook_alternative_takes_the_key_from_a_secure_parameter() -> None:
    template = load("action-group.json")
    (receiver,) = [
        r
        for group in resources(template, "Microsoft.Insights/actionGroups")
        for r in group["properties"].get("webhookReceivers", [])
    ]
    assert receiver["useCommonAlertSchema"] is True
    assert (
        "/api/alerts?code={1}" in receiver["serviceUri"] and "uriComponent(parameters('functionKey'))" in receiver["serviceUri"]
    )
    assert template["parameters"]["functionKey"]["type"] == "securestring"
    conditions = sorted(group["condition"] for group in resources(template, "Microsoft.Insights/actionGroups"))
    assert conditions == ["[not(variables('useFunctionReceiver'))]", "[variables('useFunctionReceiver')]"], (
        "exactly one receiver is deployed"
    )


def test_log_search_alert_splits_by_user_principal_name() -> None:
    template = load("action-group.json")
    (rule,) = resources(template, "Microsoft.Insights/scheduledQueryRules")
    assert rule["kind"] == "LogAlert"
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    assert criterion["dimensions"] == [{"name": "UserPrincipalName", "operator": "Include", "values": ["*"]}]
    assert {name.lower() for name in DEFAULT_USER_DIMENSIONS} >= {"userprincipalname"}, "the service reads this dimension"
    query = criterion["query"]
    assert query.lstrip().startswith("SigninLogs") and "RiskLevelDuringSignIn" in query
    (by,) = re.findall(r"summarize\s+(\w+)\s*=\s*count\(\)\s+by\s+(.+)$", query, re.MULTILINE)
    assert by[0] == criterion["metricMeasureColumn"] and [c.strip() for c in by[1].split(",")] == ["UserPrincipalName"]
    assert rule["properties"]["autoMitigate"] is False, "no resolved notifications: a sign-out is never undone"
    assert "muteActionsDuration" not in rule["properties"], "muting would drop other users' alerts"
    (action_group,) = rule["properties"]["actions"]["actionGroups"]
    assert "resourceId('Microsoft.Insights/actionGroups'" in action_group
    assert rule["properties"]["scopes"] == ["[parameters('workspaceResourceId')]"]


# --- Sentinel playbook ---------------------------------------------------------------------------


def playbook() -> tuple[dict[str, Any], dict[str, Any]]:
    template = load("sentinel-playbook.json")
    return template, workflow(template)["properties"]["definition"]


def find(definition: dict[str, Any], name: str) -> dict[str, Any]:
    (action,) = [action for found, action, *_ in all_actions(definition["actions"]) if found == name]
    return action


def test_playbook_trigger_and_sentinel_actions() -> None:
    template, definition = playbook()
    assert workflow(template)["identity"]["type"] == "SystemAssigned"
    trigger = definition["triggers"]["Microsoft_Sentinel_incident"]
    assert trigger["type"] == "ApiConnectionWebhook" and trigger["inputs"]["path"] == "/incident-creation"
    assert "['azuresentinel']" in trigger["inputs"]["host"]["connection"]["name"]
    accounts = find(definition, "Entities_-_Get_Accounts")
    assert accounts["inputs"]["path"] == "/entities/account"
    assert accounts["inputs"]["body"] == "@triggerBody()?['object']?['properties']?['relatedEntities']"
    comment = find(definition, "Add_comment_to_incident_(V3)")
    assert comment["inputs"]["path"] == "/Incidents/Comment" and comment["inputs"]["method"] == "post"
    assert comment["inputs"]["body"]["incidentArmId"] == "@triggerBody()?['object']?['id']"
    (connection,) = resources(template, "Microsoft.Web/connections")
    assert connection["properties"]["api"]["id"].endswith("'azuresentinel')]")
    sentinel = workflow(template)["properties"]["parameters"]["$connections"]["value"]["azuresentinel"]
    assert sentinel["connectionProperties"]["authentication"]["type"] == "ManagedServiceIdentity"


def test_playbook_http_action_posts_to_signouts_with_an_idempotency_key() -> None:
    _, definition = playbook()
    http = find(definition, "Sign_out_users")
    assert http["type"] == "Http" and http["inputs"]["method"] == "POST"
    assert http["inputs"]["uri"].endswith("/api/signouts")
    headers = http["inputs"]["headers"]
    assert "triggerBody()?['object']?['name']" in headers["Idempotency-Key"]
    assert headers["x-functions-key"] == "@parameters('functionKey')"
    assert definition["parameters"]["functionKey"]["type"] == "SecureString"
    assert http["runtimeConfiguration"]["secureData"]["properties"] == ["inputs"], "the key stays out of run history"
    assert http["operationOptions"] == "DisableAsyncPattern", "one user's 202 has a Location: keep the {tasks} body"
    wait = find(definition, "Wait_for_sign-out")
    assert wait["inputs"]["method"] == "GET" and wait["inputs"]["uri"] == "@items('For_each_task')?['statusUrl']"
    assert "operationOptions" not in wait, "the asynchronous pattern (202 + Location + Retry-After) does the waiting"
    assert wait["inputs"]["queries"]["code"] == "@parameters('functionKey')", (
        "Location keeps ?code= so every poll is authenticated"
    )
    assert set(wait["runtimeConfiguration"]["secureData"]["properties"]) == {"inputs", "outputs"}, "Location carries the key"
    assert find(definition, "For_each_task")["foreach"] == "@body('Sign_out_users')?['tasks']"


def test_playbook_comment_reports_the_http_results_without_the_key() -> None:
    _, definition = playbook()
    message = find(definition, "Add_comment_to_incident_(V3)")["inputs"]["body"]["message"]
    assert "body('Sign_out_users')" in message and "variables('results')" in message
    assert "body('Wait_for_sign-out')" in find(definition, "Append_result")["inputs"]["value"]
    assert "actions('Wait_for_sign-out')" in find(definition, "Append_no_result")["inputs"]["value"]
    for _, action, *_ in all_actions(definition["actions"]):
        if action["type"] == "ApiConnection":
            text = json.dumps(action["inputs"])
            assert "functionKey" not in text and "statusUrl" not in text and "Location" not in text


SENTINEL_INCIDENT = "sentinel_incident.json"
KEY = "k" * 20  # stands in for the secure parameter's value; never a real key


def _playbook_context(**actions: Any) -> Context:
    incident = fixture(SENTINEL_INCIDENT)
    return Context(
        trigger_body=incident,
        parameters={"signOutApiBaseUrl": "https://func-signout-abc123.azurewebsites.net", "functionKey": KEY},
        actions=dict(actions),
        variables={"results": []},
    )


def _run_user_list(definition: dict[str, Any], accounts: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[str]]:
    select = find(definition, "Select_user_identifiers")["inputs"]
    where = find(definition, "Filter_usable_users")["inputs"]["where"]
    context = _playbook_context(
        **{"Entities_-_Get_Accounts": {"status": "Succeeded", "outputs": {"body": {"Accounts": accounts}}}}
    )
    selected = [evaluate(select["select"], Context(item=item)) for item in evaluate(select["from"], context)]
    filtered = [item for item in selected if evaluate(where, Context(item=item))]
    context.actions["Select_user_identifiers"] = {"status": "Succeeded", "outputs": {"body": selected}}
    context.actions["Filter_usable_users"] = {"status": "Succeeded", "outputs": {"body": filtered}}
    users = evaluate(find(definition, "Users")["inputs"], context)
    return selected, filtered, users


def test_playbook_builds_the_user_list_from_account_entities() -> None:
    _, definition = playbook()
    accounts = fixture("sentinel_accounts.json")["Accounts"]  # Microsoft's sample: UPN-only, AadUserId, on-premises only
    accounts = [
        *accounts,
        dict(accounts[1]),
        {"AadUserId": "", "Name": "", "UPNSuffix": "contoso.com"},
    ]  # a duplicate, an empty one
    selected, filtered, users = _run_user_list(definition, accounts)
    assert users == ["alex.wilber@contoso.com", "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"], "AadUserId first, else Name@UPNSuffix"
    assert len(selected) - len(filtered) == 2, "the on-premises account and the empty one are skipped"
    assert all(parse_user(user) for user in users)
    _, _, none = _run_user_list(definition, [])
    assert none == []
    condition = find(definition, "Condition_-_any_user_to_sign_out")["expression"]["and"][0]["greater"]
    assert evaluate(condition[0], Context(actions={"Users": {"status": "Succeeded", "outputs": users}})) > condition[1]


def test_playbook_request_is_accepted_by_the_service_parser() -> None:
    _, definition = playbook()
    _, _, users = _run_user_list(definition, fixture("sentinel_accounts.json")["Accounts"])
    context = _playbook_context(Users={"status": "Succeeded", "outputs": users})
    request = evaluate(find(definition, "Sign_out_users")["inputs"], context)
    assert request["uri"] == "https://func-signout-abc123.azurewebsites.net/api/signouts"
    key = request["headers"]["Idempotency-Key"]
    incident = fixture(SENTINEL_INCIDENT)
    assert key == f"sentinel/{incident['workspaceId']}/{incident['object']['name']}"
    assert 1 <= len(key) <= api.MAX_IDEMPOTENCY_KEY and key.isprintable(), (
        "the service refuses longer keys (an incident ARM id is >200)"
    )
    assert request["headers"]["x-functions-key"] == KEY
    parsed = parse_signout_request(request["body"])  # the service's own validation: raises ProblemError(400) on anything wrong
    assert [user.value for user in parsed.users] == users
    assert parsed.description == incident["object"]["properties"]["title"]
    assert parsed.correlation_id == str(incident["object"]["properties"]["incidentNumber"])


def _task(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c", "user": "alex.wilber@contoso.com", "status": status, **extra}


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (
            {"status": "Succeeded", "outputs": {"statusCode": 200, "body": _task("succeeded", verified=True, error=None)}},
            "alex.wilber@contoso.com: succeeded (verified) (task 3f0c",
        ),
        (
            {
                "status": "Succeeded",
                "outputs": {
                    "statusCode": 200,
                    "body": _task("failed", verified=None, error={"category": "user_not_found", "message": "no such user"}),
                },
            },
            "alex.wilber@contoso.com: failed - user_not_found: no such user (task",
        ),
        ({"status": "TimedOut"}, "alex.wilber@contoso.com: no final status yet (status check TimedOut) (task 3f0c"),
        (
            {
                "status": "Failed",
                "outputs": {"statusCode": 404, "body": {"type": "about:blank", "title": "Task not found", "status": 404}},
            },
            "no final status yet (status check Failed, HTTP 404)",
        ),
        (
            {"status": "Failed", "outputs": {"statusCode": 502, "body": "<html>Bad Gateway</html>"}},
            "no final status yet (status check Failed, HTTP 502)",
        ),
    ],
    ids=["succeeded", "failed", "timed out", "status check failed", "gateway error page"],
)
def test_playbook_result_line_for_each_outcome(wait: dict[str, Any], expected: str) -> None:
    _, definition = playbook()
    summary = {
        "id": "3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
        "user": "alex.wilber@contoso.com",
        "status": "queued",
        "statusUrl": "https://x/api/signouts/3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
    }
    context = Context(actions={"Wait_for_sign-out": wait}, items={"For_each_task": summary})
    condition = find(definition, "Condition_-_finished")
    (check,) = condition["expression"]["and"]
    left, right = check["equals"]
    finished = evaluate(left, context) == right
    branch = condition["actions"] if finished else condition["else"]["actions"]
    (append,) = branch.values()
    line = evaluate(append["inputs"]["value"], context)
    assert expected in line and KEY not in line


def test_playbook_comments_render() -> None:
    _, definition = playbook()
    accepted = {
        "tasks": [
            {
                "id": "3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
                "user": "alex.wilber@contoso.com",
                "status": "queued",
                "statusUrl": f"https://x/api/signouts/3f0c?code={KEY}",
            }
        ]
    }
    context = _playbook_context(
        Sign_out_users={
            "status": "Succeeded",
            "outputs": {"statusCode": 202, "headers": {"Idempotent-Replayed": "true"}, "body": accepted},
        },
        Select_user_identifiers={"status": "Succeeded", "outputs": {"body": ["alex.wilber@contoso.com", ""]}},
        Filter_usable_users={"status": "Succeeded", "outputs": {"body": ["alex.wilber@contoso.com"]}},
        Users={"status": "Succeeded", "outputs": ["alex.wilber@contoso.com"]},
    )
    context.variables["results"] = ["alex.wilber@contoso.com: succeeded (verified) (task 3f0c)"]
    comment = evaluate(find(definition, "Add_comment_to_incident_(V3)")["inputs"]["body"], context)
    assert comment["incidentArmId"] == fixture(SENTINEL_INCIDENT)["object"]["id"]
    assert "1 account(s), already requested" in comment["message"] and "succeeded (verified)" in comment["message"]
    assert "1 account entit(ies) had neither" in comment["message"] and KEY not in comment["message"]

    problem = {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 400,
        "detail": "1 problem(s)",
        "errors": [{"pointer": "/users/0", "detail": "is not a UPN"}],
    }
    failed_path = find(definition, "Add_comment_to_incident_(V3)_-_request_failed")["inputs"]["body"]["message"]
    terminate = find(definition, "Terminate_-_request_failed")["inputs"]["runError"]["message"]
    for outcome, expected in [
        (
            {"status": "Failed", "outputs": {"statusCode": 400, "body": problem}},
            ["HTTP 400", '"pointer":"/users/0"', "Invalid request"],
        ),
        ({"status": "Failed", "outputs": {"statusCode": 401, "body": ""}}, ["HTTP 401"]),
        ({"status": "TimedOut"}, ["no answer (TimedOut)"]),
    ]:
        context.actions["Sign_out_users"] = outcome
        failed = evaluate(failed_path, context)
        assert all(text in failed for text in expected) and KEY not in failed, failed
        assert expected[0] in evaluate(terminate, context)


# --- Logic App -> queue ------------------------------------------------------------------------


def test_queue_logic_app_uses_the_azure_queues_connector_with_managed_identity() -> None:
    template = load("logic-app-queue.json")
    (connection,) = resources(template, "Microsoft.Web/connections")
    assert connection["properties"]["api"]["id"].endswith("'azurequeues')]")
    assert connection["properties"]["parameterValueSet"] == {"name": "managedIdentityAuth", "values": {}}
    assert "parameterValues" not in connection["properties"], "no storage account key"
    resource = workflow(template)
    assert resource["identity"]["type"] == "SystemAssigned"
    queues = resource["properties"]["parameters"]["$connections"]["value"]["azurequeues"]
    assert queues["connectionProperties"]["authentication"]["type"] == "ManagedServiceIdentity"
    put = resource["properties"]["definition"]["actions"]["Put_a_message_on_a_queue_(V2)"]
    assert put["inputs"]["method"] == "post"
    assert re.fullmatch(r"/v2/storageAccounts/@\{.+\}/queues/@\{.+\}/messages", put["inputs"]["path"])
    assert template["parameters"]["queueName"]["defaultValue"] == "signout-requests"
    (role,) = resources(template, "Microsoft.Authorization/roleAssignments")
    assert "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a" in json.dumps(template), "Storage Queue Data Message Sender"
    assert role["scope"].endswith(
        "/queueServices/default/queues/{1}', parameters('storageAccountName'), parameters('queueName'))]"
    ), "this queue only"


QUEUE_SCHEMA = json.loads((ROOT / "shared" / "schemas" / "queue-message.v1.schema.json").read_text(encoding="utf-8"))
DIRECT_REQUEST = {  # the documented direct-enqueue message, as this example promises it
    "type": "object",
    "required": ["user"],
    "properties": {"user": {"type": "string"}, "description": {"type": "string"}, "correlationId": {"type": "string"}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "request_body",
    [
        {"user": "adele.vance@contoso.com"},
        {"user": "adele.vance@contoso.com", "description": "Ticket 4711: phished", "correlationId": "4711"},
        {"user": "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b", "description": "x" * 1024},
    ],
    ids=["user only", "all fields", "object id, longest description"],
)
def test_queue_message_is_a_direct_request_the_worker_accepts(request_body: dict[str, Any]) -> None:
    template = load("logic-app-queue.json")
    definition = workflow(template)["properties"]["definition"]
    trigger_schema = definition["triggers"]["When_a_HTTP_request_is_received"]["inputs"]["schema"]
    assert not list(Draft202012Validator(trigger_schema).iter_errors(request_body)), "the trigger accepts it"
    compose = definition["actions"]["Build_sign-out_message"]["inputs"]
    connections = {
        "azurequeues": {"connectionId": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/connections/azurequeues-x"}
    }
    parameters = {
        "$connections": connections,
        "queueEndpoint": "https://st.queue.core.windows.net",
        "queueName": "signout-requests",
    }
    context = Context(trigger_body=request_body, parameters=parameters)
    message = evaluate(compose, context)
    assert not list(Draft202012Validator(DIRECT_REQUEST).iter_errors(message))
    assert not list(Draft202012Validator(QUEUE_SCHEMA).iter_errors(message)), "the published queue-message schema"
    context.actions["Build_sign-out_message"] = {"status": "Succeeded", "outputs": message}
    put = evaluate(definition["actions"]["Put_a_message_on_a_queue_(V2)"]["inputs"], context)
    assert isinstance(put["body"], str), "plain text, as the connector writes it"
    assert put["path"] == "/v2/storageAccounts/https%253A%252F%252Fst.queue.core.windows.net/queues/signout-requests/messages"
    decoded = decode_message(put["body"].encode())
    assert isinstance(decoded, DirectRequest) and decoded.user.value == request_body["user"]
    assert decoded.description == request_body.get("description", "")
    assert decoded.correlation_id == request_body.get("correlationId", "08584712345678901234567890CU00")


def test_queue_trigger_refuses_what_the_worker_would_drop() -> None:
    definition = workflow(load("logic-app-queue.json"))["properties"]["definition"]
    trigger = definition["triggers"]["When_a_HTTP_request_is_received"]
    assert trigger["operationOptions"] == "EnableSchemaValidation", "a bad request is a 400 to the caller, not a dropped message"
    validator = Draft202012Validator(trigger["inputs"]["schema"])
    for bad in ({}, {"user": ""}, {"user": "a@contoso.com", "extra": 1}, {"user": "a@contoso.com", "description": "x" * 1025}):
        assert list(validator.iter_errors(bad)), bad


# --- README ------------------------------------------------------------------------------------


def test_readme_covers_every_example_and_the_connector() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in TEMPLATES:
        assert f"`{name}`" in readme or f"({name})" in readme, name
    assert "shared/openapi.json" in readme and "custom connector" in readme.lower()
    assert "../" + "shared" not in readme  # the reference folder beside checkouts is not the project
