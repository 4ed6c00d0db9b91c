"""Properties of the Bicep templates in infra/ that matter for security and for the app.

Read from pycep-parser's JSON (not regexes) wherever the property is in the template
structure; text scans are used only for "this string must appear nowhere".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from infra_helpers import (
    GRAPH_DIR,
    INFRA,
    REPO_ROOT,
    accessor_path,
    bicep_files,
    body,
    one_resource,
    param_default,
    parse,
    rel,
    resources_of_type,
    variable,
    walk,
)

STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

# Built-in role definition ids the managed identity is meant to hold: exactly these.
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
EXPECTED_ROLE_SCOPES = {
    QUEUE_DATA_CONTRIBUTOR: STORAGE_ACCOUNT,
    TABLE_DATA_CONTRIBUTOR: STORAGE_ACCOUNT,
    BLOB_DATA_OWNER: CONTAINER,
    MONITORING_METRICS_PUBLISHER: "Microsoft.Insights/components",
}
# Broad roles that must never appear (Owner, Contributor, User Access Administrator,
# Storage Account Contributor, Storage Blob Data Contributor on the account, Reader and Data Access).
FORBIDDEN_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "c12c1c16-33a1-487b-954d-41c89c60f349",
}

GRAPH_APP_ROLES = ["User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All"]
FORBIDDEN_GRAPH_PERMISSIONS = {
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
    "Directory.Read.All",
    "Directory.AccessAsUser.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "User.EnableDisableAccount.All",
    "RoleManagement.ReadWrite.Directory",
    "AppRoleAssignment.ReadWrite.All",
    "Application.ReadWrite.All",
}

# App settings the code reads (from the app team), on top of shared.settings.SETTING_NAMES.
EXPLICIT_SETTINGS = [
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AZURE_CLIENT_ID",
    "GRAPH_ENDPOINT",
    "SIGNOUT_QUEUE_NAME",
    "STATUS_TABLE_NAME",
    "PROTECTED_USERS",
    "RETRY_BUDGET_MINUTES",
    "RETRY_BASE_SECONDS",
    "GRAPH_TIMEOUT_SECONDS",
    "BULK_QUEUE_NAME",
    "BULK_PAGE_QUEUE_NAME",
    "ALLOW_ALL_USERS",
    "CALLBACK_ALLOWED_HOSTS",
    "REQUIRE_APP_ROLES",
    "RETENTION_DAYS",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
]

# setting -> (parameter in function.bicep and main.bicep, expected default)
SETTING_DEFAULTS = {
    "GRAPH_ENDPOINT": ("graphEndpoint", "https://graph.microsoft.com"),
    "PROTECTED_USERS": ("protectedUsers", ""),
    "RETRY_BUDGET_MINUTES": ("retryBudgetMinutes", 60),
    "RETRY_BASE_SECONDS": ("retryBaseSeconds", 2),
    "GRAPH_TIMEOUT_SECONDS": ("graphTimeoutSeconds", 15),
    "ALLOW_ALL_USERS": ("allowAllUsers", False),
    "CALLBACK_ALLOWED_HOSTS": ("callbackAllowedHosts", ""),
    "RETENTION_DAYS": ("retentionDays", 365),
    "BULK_APPROVAL_THRESHOLD": ("bulkApprovalThreshold", 1000),
    "BULK_APPROVAL_TTL_SECONDS": ("bulkApprovalTtlSeconds", 3600),
}
NAME_DEFAULTS = {
    "SIGNOUT_QUEUE_NAME": ("signOutQueueName", "signout-requests"),
    "BULK_QUEUE_NAME": ("bulkQueueName", "signout-bulk"),
    "BULK_PAGE_QUEUE_NAME": ("bulkPageQueueName", "signout-bulk-pages"),
    "STATUS_TABLE_NAME": ("statusTableName", "signouttasks"),
}


def non_graph_files() -> list[Path]:
    return [path for path in bicep_files() if GRAPH_DIR not in path.parents]


def module_params(parsed: dict, symbol: str) -> dict:
    modules = parsed.get("modules") or {}
    assert symbol in modules, f"module {symbol} not declared"
    return body(modules[symbol])["params"]


# --------------------------------------------------------------------------------------
# Parsing and file layout (what tools/lint_infra.sh relies on)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_every_bicep_file_parses(path):
    parsed = parse(rel(path))
    assert parsed.get("resources") or parsed.get("modules"), f"{rel(path)} declares nothing"


def test_expected_files_exist():
    expected = {
        "main.bicep",
        "app/identity.bicep",
        "app/monitoring.bicep",
        "app/storage.bicep",
        "app/rbac.bicep",
        "app/function.bicep",
        "app/easy-auth.bicep",
        "graph/graph-permissions.bicep",
        "graph/api-app.bicep",
    }
    assert expected <= {rel(path) for path in bicep_files()}


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_extension_files_live_in_graph_dir_and_hold_only_graph_resources(path):
    parsed = parse(rel(path))
    in_graph_dir = GRAPH_DIR in path.parents
    if parsed.get("extensions"):
        assert in_graph_dir, f"{rel(path)} uses a Bicep extension outside infra/graph/ (checkov cannot parse it)"
        assert set(parsed["extensions"]) == {"microsoftGraphV1"}, "use the alias from bicepconfig.json"
    if in_graph_dir:
        # These files are not scanned by checkov: they may hold nothing checkov would check.
        assert not parsed.get("modules")
        for symbol, resource in parsed["resources"].items():
            assert resource["type"].startswith("Microsoft.Graph/"), f"{rel(path)}: {symbol} is {resource['type']}"


def test_bicepconfig_pins_graph_extension():
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    reference = config["extensions"]["microsoftGraphV1"]
    assert reference.startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")
    assert re.fullmatch(r".*:\d+\.\d+\.\d+", reference), "pin an exact extension version"


@pytest.mark.parametrize("path", non_graph_files(), ids=rel)
def test_no_conditional_resources_in_checkov_scanned_files(path):
    # checkov evaluates `resource x '...' = if (cond) {...}` against the wrong object, so the
    # resource would escape its checks; optional resources go into a conditional module.
    for symbol, resource in (parse(rel(path)).get("resources") or {}).items():
        config = resource["config"]
        assert not ("condition" in config and "loop_type" not in config), f"{rel(path)}: {symbol} is conditional"


def test_graph_modules_are_wired_from_main(main_bicep):
    modules = main_bicep["modules"]
    paths = {symbol: module["detail"]["path"] for symbol, module in modules.items()}
    assert paths["graphPermissions"] == "graph/graph-permissions.bicep"
    assert paths["apiApp"] == "graph/api-app.bicep"
    assert module_params(main_bicep, "graphPermissions")["principalId"] == accessor_path_str("identity.outputs.principalId")
    for symbol, path in paths.items():
        assert (INFRA / path).is_file(), f"module {symbol}: {path} missing"


def accessor_path_str(dotted: str):
    """Build the pycep JSON for `a.b.c` so it can be compared with parsed values."""
    parts = dotted.split(".")
    expression = parts[-1]
    for part in reversed(parts[:-1]):
        expression = {"operator": {"type": "property_accessor", "operands": {"operand_1": part, "operand_2": expression}}}
    return expression


# --------------------------------------------------------------------------------------
# Keyless storage
# --------------------------------------------------------------------------------------
def test_storage_account_is_hardened(storage_bicep):
    _, account = one_resource(storage_bicep, STORAGE_ACCOUNT)
    properties = body(account)["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["isLocalUserEnabled"] is False
    assert properties["isSftpEnabled"] is False
    assert properties["allowCrossTenantReplication"] is False
    for symbol, container in resources_of_type(storage_bicep, CONTAINER).items():
        assert body(container)["properties"]["publicAccess"] == "None", symbol


KEY_PATTERNS = [
    r"listKeys",
    r"AccountKey\s*=",
    r"DefaultEndpointsProtocol",
    r"SharedAccessSignature",
    r"listAccountSas",
    r"listServiceSas",
    r"primaryKey",
    r"InstrumentationKey\s*=",
]


def infra_text_files() -> list[Path]:
    files = [path for path in INFRA.rglob("*") if path.is_file()]
    return sorted([*files, REPO_ROOT / "azure.yaml"])


@pytest.mark.parametrize("pattern", KEY_PATTERNS)
def test_no_storage_keys_or_connection_strings_anywhere(pattern):
    for path in infra_text_files():
        text = path.read_text()
        assert not re.search(pattern, text, re.IGNORECASE), f"{path.relative_to(REPO_ROOT)} matches {pattern!r}"


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_no_list_functions_in_templates(path):
    # listKeys(), listSecrets(), listAccountSas(), ... all hand out secrets.
    for node in walk(parse(rel(path))):
        if isinstance(node, dict) and isinstance(node.get("function"), dict):
            name = str(node["function"].get("type", ""))
            assert not name.lower().startswith("list"), f"{rel(path)} calls {name}"


def test_host_storage_connection_is_identity_based(app_settings):
    # A plain AzureWebJobsStorage would be a connection string (with the account key).
    assert "AzureWebJobsStorage" not in app_settings
    assert app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert app_settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        value = app_settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert accessor_path(value) == ["storage", "properties", "primaryEndpoints", service]
    assert not any(name.startswith("AzureWebJobsStorage__accountKey") for name in app_settings)
    assert not [name for name in app_settings if "CONNECTION_STRING" in name and name != "APPLICATIONINSIGHTS_CONNECTION_STRING"]


def test_storage_account_in_settings_is_the_one_created(function_bicep, main_bicep):
    existing = resources_of_type(function_bicep, STORAGE_ACCOUNT, existing=True)
    assert [body(resource)["name"] for resource in existing.values()] == ["storageAccountName"]
    assert module_params(main_bicep, "function")["storageAccountName"] == accessor_path_str("storage.outputs.name")


def test_managed_identity_is_user_assigned_and_used_everywhere(function_bicep, app_settings, main_bicep):
    _, site = one_resource(function_bicep, "Microsoft.Web/sites")
    identity = body(site)["identity"]
    assert identity["type"] == "UserAssigned"  # no SystemAssigned alongside
    assert list(identity["userAssignedIdentities"]) == ["'${identityId}'"]
    assert app_settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD;ClientId=${identityClientId}"
    assert accessor_path(app_settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [
        "applicationInsights",
        "properties",
        "ConnectionString",
    ]
    params = module_params(main_bicep, "function")
    assert params["identityId"] == accessor_path_str("identity.outputs.id")
    assert params["identityClientId"] == accessor_path_str("identity.outputs.clientId")
    identity_file = parse("app/identity.bicep")
    one_resource(identity_file, "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert identity_file["outputs"]["clientId"]["value"] == accessor_path_str("identity.properties.clientId")


# --------------------------------------------------------------------------------------
# App settings the code reads
# --------------------------------------------------------------------------------------
def setting_present(name: str, settings: dict) -> bool:
    # AzureWebJobsStorage is read as a connection *prefix*: identity-based AzureWebJobsStorage__*.
    if name == "AzureWebJobsStorage":
        return any(key.startswith("AzureWebJobsStorage__") for key in settings)
    return name in settings


def test_every_setting_in_shared_settings_is_set(app_settings):
    from shared.settings import SETTING_NAMES

    missing = [name for name in SETTING_NAMES if not setting_present(name, app_settings)]
    assert not missing, f"app settings the code reads but infra does not set: {missing}"


@pytest.mark.parametrize("name", EXPLICIT_SETTINGS)
def test_every_setting_from_the_app_team_is_set(name, app_settings):
    assert name in app_settings


@pytest.mark.parametrize("setting", sorted(SETTING_DEFAULTS))
def test_setting_defaults(setting, app_settings, function_bicep, main_bicep):
    param, default = SETTING_DEFAULTS[setting]
    value = app_settings[setting]
    if isinstance(default, bool):
        assert value == {
            "operator": {"type": "conditional", "operands": {"condition": param, "true_value": "true", "false_value": "false"}}
        }
    elif isinstance(default, int):
        assert value == {"function": {"type": "string", "parameters": {"value_to_convert": param}}}
    else:
        assert value == param
    assert param_default(function_bicep, param) == default
    assert param_default(main_bicep, param) == default
    assert module_params(main_bicep, "function")[param] == param, f"main.bicep does not pass {param}"


@pytest.mark.parametrize("setting", sorted(NAME_DEFAULTS))
def test_queue_and_table_names_match_storage(setting, app_settings, function_bicep, storage_bicep):
    param, default = NAME_DEFAULTS[setting]
    assert app_settings[setting] == param
    assert param_default(function_bicep, param) == default
    assert param_default(storage_bicep, param) == default


def test_require_app_roles_follows_easy_auth(app_settings):
    assert app_settings["REQUIRE_APP_ROLES"] == {
        "operator": {
            "type": "conditional",
            "operands": {"condition": "enableAppServiceAuth", "true_value": "true", "false_value": "false"},
        }
    }


def test_defaults_agree_with_the_code():
    from shared import settings as code

    defaults = code.Settings()
    checks = {
        "graph_endpoint": "https://graph.microsoft.com",
        "signout_queue": "signout-requests",
        "status_table": "signouttasks",
        "retry_budget_minutes": 60,
        "retry_base_seconds": 2,
        "graph_timeout_seconds": 15,
    }
    for field, infra_default in checks.items():
        if hasattr(defaults, field):
            assert getattr(defaults, field) == infra_default, field


def test_no_settings_flex_consumption_rejects(app_settings):
    # Deprecated/unsupported on Flex Consumption (runtime and deployment live in functionAppConfig).
    for name in (
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    ):
        assert name not in app_settings


# --------------------------------------------------------------------------------------
# Queues and table
# --------------------------------------------------------------------------------------
def interpolate(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda match: values[match.group(1)], template)


def test_queues_and_status_table_are_created(storage_bicep):
    defaults = dict(NAME_DEFAULTS.values())
    queue_resources = resources_of_type(storage_bicep, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert list(queue_resources) == ["queues"]
    loop = queue_resources["queues"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "queueNames"
    assert body(queue_resources["queues"])["name"] == loop["item_name"]
    queues = {
        interpolate(name, defaults) if "${" in name else defaults.get(name, name)
        for name in variable(storage_bicep, "queueNames")
    }
    assert queues == {
        "signout-requests",
        "signout-requests-poison",
        "signout-bulk",
        "signout-bulk-poison",
        "signout-bulk-pages",
        "signout-bulk-pages-poison",
    }

    _, table = one_resource(storage_bicep, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert defaults[body(table)["name"]] == "signouttasks"


# --------------------------------------------------------------------------------------
# RBAC: least privilege, by role definition id
# --------------------------------------------------------------------------------------
def role_assignments() -> list[tuple[str, str, dict, dict]]:
    """(file, symbol, assignment body, parsed file) for every role assignment in infra/."""
    found = []
    for path in bicep_files():
        parsed = parse(rel(path))
        for symbol, resource in resources_of_type(parsed, ROLE_ASSIGNMENT).items():
            found.append((rel(path), symbol, body(resource), parsed))
    return found


def role_id_of(assignment: dict, parsed: dict) -> str:
    function = assignment["properties"]["roleDefinitionId"]["function"]
    assert function["type"] == "subscription_resource_id"
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    path = accessor_path(function["parameters"]["resource_name_1"])
    assert path and path[0] == "roles" and len(path) == 2, "use the roles variable"
    return variable(parsed, "roles")[path[1]]


def scope_type(assignment: dict, parsed: dict) -> str:
    scope = assignment.get("scope")
    assert scope is not None, "role assignments must name their scope (never the whole resource group)"
    if isinstance(scope, dict):  # containers[i]
        operator = scope["operator"]
        assert operator["type"] == "index_accessor"
        scope = operator["operands"]["operand_1"]
    return parsed["resources"][scope]["type"]


def test_role_assignments_are_exactly_the_intended_set():
    assignments = role_assignments()
    assert {file for file, *_ in assignments} == {"app/rbac.bicep"}, "keep RBAC in app/rbac.bicep"
    roles = {role_id_of(assignment, parsed) for _, _, assignment, parsed in assignments}
    assert roles == set(EXPECTED_ROLE_SCOPES)
    assert len(assignments) == len(EXPECTED_ROLE_SCOPES)


@pytest.mark.parametrize("index", range(len(EXPECTED_ROLE_SCOPES)))
def test_each_role_assignment_is_scoped_and_for_the_identity(index):
    file, symbol, assignment, parsed = role_assignments()[index]
    role = role_id_of(assignment, parsed)
    assert scope_type(assignment, parsed) == EXPECTED_ROLE_SCOPES[role], f"{file}:{symbol}"
    assert assignment["properties"]["principalId"] == "principalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"


def test_blob_data_owner_only_on_the_host_containers(main_bicep, storage_bicep):
    rbac = parse("app/rbac.bicep")
    containers = resources_of_type(rbac, CONTAINER, existing=True)
    assert list(containers) == ["containers"]
    assert containers["containers"]["config"]["loop_type"]["detail"]["array_name"] == "blobContainerNames"
    params = module_params(main_bicep, "rbac")
    assert params["blobContainerNames"] == accessor_path_str("storage.outputs.hostBlobContainerNames")
    assert params["principalId"] == accessor_path_str("identity.outputs.principalId")
    # storage.bicep: the deployment container + the Functions host's own two containers.
    assert variable(storage_bicep, "hostContainerNames") == ["azure-webjobs-hosts", "azure-webjobs-secrets"]
    output = storage_bicep["outputs"]["hostBlobContainerNames"]["value"]["function"]
    assert output["type"] == "concat"
    first, second = output["parameters"].values()
    assert first == [accessor_path_str("deploymentContainer.name")]
    assert second == "hostContainerNames"
    # ... which is the container the Flex app deploys from.
    assert module_params(main_bicep, "storage")["deploymentContainerName"] == "deploymentContainerName"
    assert module_params(main_bicep, "function")["deploymentContainerName"] == "deploymentContainerName"


def test_no_broad_roles_anywhere():
    for path in infra_text_files():
        text = path.read_text().lower()
        for role in FORBIDDEN_ROLE_IDS:
            assert role not in text, f"{path.relative_to(REPO_ROOT)} mentions role {role}"


# --------------------------------------------------------------------------------------
# Microsoft Graph application permissions
# --------------------------------------------------------------------------------------
def hook_script_roles() -> list[str]:
    text = (INFRA / "hooks" / "postprovision.sh").read_text()
    match = re.search(r'^GRAPH_APP_ROLES="([^"]*)"', text, re.MULTILINE)
    assert match, "GRAPH_APP_ROLES not found in postprovision.sh"
    return match.group(1).split()


def test_graph_permissions_are_exactly_the_listed_ones():
    parsed = parse("graph/graph-permissions.bicep")
    assert variable(parsed, "graphAppRoles") == GRAPH_APP_ROLES
    ((_symbol, resource),) = resources_of_type(parsed, "Microsoft.Graph/appRoleAssignedTo").items()
    loop = resource["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "graphAppRoles"
    assignment = body(resource)
    assert assignment["principalId"] == "principalId"
    assert accessor_path(assignment["resourceId"]) == ["microsoftGraph", "id"]
    graph_sp = parsed["resources"]["microsoftGraph"]
    assert graph_sp["existing"] is True
    assert body(graph_sp)["appId"] == "00000003-0000-0000-c000-000000000000"


def test_hook_script_grants_the_same_permissions():
    assert hook_script_roles() == GRAPH_APP_ROLES


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_no_broader_graph_permission_in_templates(path):
    strings = {node for node in walk(parse(rel(path))) if isinstance(node, str)}
    assert not strings & FORBIDDEN_GRAPH_PERMISSIONS


def test_graph_permissions_can_be_left_to_an_administrator(main_bicep):
    assert param_default(main_bicep, "grantGraphPermissions") is True
    module = main_bicep["modules"]["graphPermissions"]
    assert module["config"]["condition"] == "grantGraphPermissions"
    assert main_bicep["outputs"]["GRAPH_PERMISSIONS_GRANTED_BY_TEMPLATE"]["value"] == "grantGraphPermissions"
    assert main_bicep["outputs"]["MANAGED_IDENTITY_PRINCIPAL_ID"]["value"] == accessor_path_str("identity.outputs.principalId")


# --------------------------------------------------------------------------------------
# Flex Consumption app and scale settings vs. the Graph write quota
# --------------------------------------------------------------------------------------
def test_flex_consumption_plan_and_site(function_bicep):
    _, plan = one_resource(function_bicep, "Microsoft.Web/serverfarms")
    assert body(plan)["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert body(plan)["properties"]["reserved"] is True
    _, site = one_resource(function_bicep, "Microsoft.Web/sites")
    site = body(site)
    assert site["kind"] == "functionapp,linux"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    assert "alwaysReady" not in config["scaleAndConcurrency"]


def test_basic_publishing_credentials_are_disabled(function_bicep):
    policies = resources_of_type(function_bicep, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(policy)["name"]: body(policy)["properties"]["allow"] for policy in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def host_json_concurrency() -> tuple[int, int]:
    queues = json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["queues"]
    return queues["batchSize"], queues["newBatchThreshold"]


def test_instance_cap_keeps_graph_writes_under_the_per_app_quota(function_bicep, main_bicep):
    per_app_writes_per_second = 3000 / 150
    assert per_app_writes_per_second == 20
    cap = param_default(function_bicep, "maximumInstanceCount")
    assert cap == param_default(main_bicep, "maximumInstanceCount") == 1
    assert module_params(main_bicep, "function")["maximumInstanceCount"] == "maximumInstanceCount"
    _, site = one_resource(function_bicep, "Microsoft.Web/sites")
    scale = body(site)["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"

    # Unpaced, a single instance exceeds the quota, so only the app's (per-process) pacer
    # bounds the rate, and the cap must keep exactly one pacer running.
    batch_size, new_batch_threshold = host_json_concurrency()
    in_flight = batch_size + new_batch_threshold
    assert in_flight / 0.300 > per_app_writes_per_second
    assert cap * per_app_writes_per_second <= per_app_writes_per_second


def test_scale_arithmetic_comment_matches_host_json():
    text = (INFRA / "app" / "function.bicep").read_text()
    batch_size, new_batch_threshold = host_json_concurrency()
    in_flight = batch_size + new_batch_threshold
    assert f"batchSize {batch_size} + newBatchThreshold {new_batch_threshold}" in text
    assert f"up to {in_flight} messages in flight per instance" in text
    assert f"{in_flight} in flight / 0.300 s per revoke = {round(in_flight / 0.3):>3} writes/s" in text
    assert f"{in_flight} in flight / 0.100 s per revoke = {round(in_flight / 0.1):>3} writes/s" in text


# --------------------------------------------------------------------------------------
# App Service Authentication and the caller app registration
# --------------------------------------------------------------------------------------
def test_easy_auth_is_optional_and_wired(function_bicep, main_bicep):
    assert param_default(main_bicep, "enableAppServiceAuth") is False
    module = function_bicep["modules"]["easyAuth"]
    assert module["detail"]["path"] == "easy-auth.bicep"
    assert module["config"]["condition"] == "enableAppServiceAuth"
    assert body(module)["params"]["authClientId"] == "authClientId"


def test_easy_auth_settings():
    parsed = parse("app/easy-auth.bicep")
    _, auth = one_resource(parsed, "Microsoft.Web/sites/config")
    auth = body(auth)
    assert auth["name"] == "authsettingsV2"
    properties = auth["properties"]
    assert properties["platform"]["enabled"] is True
    validation = properties["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == ["/api/health"]
    assert properties["httpSettings"]["requireHttps"] is True
    aad = properties["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert "clientSecretSettingName" not in aad["registration"]  # no secret: bearer tokens only
    assert "authClientId" in aad["validation"]["allowedAudiences"]
    assert properties["login"]["tokenStore"]["enabled"] is False


def test_caller_app_registration_declares_the_three_app_roles():
    parsed = parse("graph/api-app.bicep")
    _, app = one_resource(parsed, "Microsoft.Graph/applications")
    app = body(app)
    assert {role["value"] for role in app["appRoles"]} == {"SignOuts.Create", "SignOuts.Read", "SignOuts.Approve"}
    for role in app["appRoles"]:
        assert role["isEnabled"] is True
        assert set(role["allowedMemberTypes"]) == {"Application", "User"}
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["api"]["requestedAccessTokenVersion"] == 2
    assert "passwordCredentials" not in app and "keyCredentials" not in app
    _, service_principal = one_resource(parsed, "Microsoft.Graph/servicePrincipals")
    assert body(service_principal)["appRoleAssignmentRequired"] is True


# --------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------
def test_monitoring_is_keyless():
    parsed = parse("app/monitoring.bicep")
    _, workspace = one_resource(parsed, "Microsoft.OperationalInsights/workspaces")
    assert body(workspace)["properties"]["features"]["disableLocalAuth"] is True
    _, component = one_resource(parsed, "Microsoft.Insights/components")
    properties = body(component)["properties"]
    assert properties["DisableLocalAuth"] is True
    assert accessor_path(properties["WorkspaceResourceId"]) == ["workspace", "id"]


# --------------------------------------------------------------------------------------
# azd wiring
# --------------------------------------------------------------------------------------
def test_azure_yaml_points_at_the_repo_root_function_app(function_bicep):
    text = (REPO_ROOT / "azure.yaml").read_text()
    services = re.search(r"^services:\n((?:[ #].*\n|\n)+)", text, re.MULTILINE).group(1)
    service_names = re.findall(r"^  (\w[\w-]*):\s*$", services, re.MULTILINE)
    assert service_names == ["api"]
    for line in ("project: .", "language: python", "host: function"):
        assert re.search(rf"^    {re.escape(line)}\s*$", services, re.MULTILINE), line
    _, site = one_resource(function_bicep, "Microsoft.Web/sites")
    tags = body(site)["tags"]["function"]["parameters"]
    assert {"'azd-service-name'": "api"} in tags.values()
    for required in ("function_app.py", "host.json", "requirements.txt", ".funcignore"):
        assert (REPO_ROOT / required).exists(), required
    funcignore = (REPO_ROOT / ".funcignore").read_text().split()
    assert {"infra/", "tests/", "tools/"} <= set(funcignore)


def test_azure_yaml_hooks_exist():
    text = (REPO_ROOT / "azure.yaml").read_text()
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.MULTILINE)
    hooks = re.findall(r"run: (?:sh )?\./(infra/hooks/\S+)", text)
    assert hooks, "no post-provision hook"
    for hook in hooks:
        assert (REPO_ROOT / hook).is_file(), hook


def test_main_parameters_file_matches_main_bicep(main_bicep):
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = set(main_bicep["parameters"])
    assert set(parameters) <= declared, set(parameters) - declared
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    # Defaults in the azd parameter file (${VAR=default}) agree with the template's.
    for name, entry in parameters.items():
        match = re.fullmatch(r"\$\{\w+=(.*)\}", entry["value"])
        if match:
            default = main_bicep["parameters"][name]["default"]
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(1) == expected, name


OUTSIDE_SHARED = "../" + "shared"  # the reference folder beside checkouts, not the project's shared/


def test_nothing_references_the_shared_folder_outside_the_repo():
    paths = [*infra_text_files(), REPO_ROOT / "tools" / "lint_infra.sh", REPO_ROOT / "docs" / "deployment.md"]
    for path in paths:
        if path.exists():
            assert OUTSIDE_SHARED not in path.read_text(), path


def test_deployment_guide_covers_the_operations():
    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    for topic in (
        "azd up",
        "Privileged Role Administrator",
        "```mermaid",
        "/api/alerts",
        "Sentinel",
        "Logic App",
        "az functionapp keys set",
        "az functionapp keys delete",
        "x-ms-client-principal",
        "401",
        *GRAPH_APP_ROLES,
        "SignOuts.Create",
        "SignOuts.Read",
    ):
        assert topic in text, topic
