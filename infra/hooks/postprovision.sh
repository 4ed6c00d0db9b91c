#!/bin/sh
# Microsoft Graph application permissions of the Function App's managed identity.
#
#   grant   (default when the template did not grant them, i.e. grantGraphPermissions=false)
#   verify  (default when the template granted them; or pass --verify)
#
# azd runs this after `azd provision` with the template outputs in the environment. To run
# it by hand (e.g. an administrator, after a deployer without the Entra role provisioned):
#   eval "$(azd env get-values)" && sh infra/hooks/postprovision.sh          # grant
#   MANAGED_IDENTITY_PRINCIPAL_ID=<object id> sh infra/hooks/postprovision.sh --verify
#
# Who can run it (Microsoft Entra roles of the signed-in `az` user):
#   grant:  Privileged Role Administrator or Global Administrator. Application Administrator
#           and Cloud Application Administrator can NOT grant Microsoft Graph app roles.
#   verify: any member user (reads service principals and their app role assignments).
# Sovereign clouds: `az cloud set --name AzureUSGovernment` (etc.) before `az login`.
#
# Exactly these permissions, nothing broader (same list as infra/graph/graph-permissions.bicep):
GRAPH_APP_ROLES="User.RevokeSessions.All User.Read.All GroupMember.Read.All"
# Microsoft Graph's appId, the same in every cloud.
GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"

set -eu

mode=grant
if [ "${GRAPH_PERMISSIONS_GRANTED_BY_TEMPLATE:-false}" = "true" ]; then
  mode=verify
fi
case "${1:-}" in
  --verify) mode=verify ;;
  --grant) mode=grant ;;
  "") ;;
  *) echo "usage: $0 [--grant|--verify]" >&2; exit 2 ;;
esac

principal="${MANAGED_IDENTITY_PRINCIPAL_ID:-}"
if [ -z "$principal" ]; then
  echo "MANAGED_IDENTITY_PRINCIPAL_ID is not set: run through azd, or eval \"\$(azd env get-values)\" first." >&2
  exit 2
fi
graph="${GRAPH_ENDPOINT:-https://graph.microsoft.com}"
graph="${graph%/}"

if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is required for this step; install it, 'az login', and re-run:" >&2
  echo "  sh infra/hooks/postprovision.sh" >&2
  exit 1
fi

echo "Microsoft Graph app roles for managed identity $principal ($mode)"

graph_sp_id=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
# "<role id><TAB><role value>" for every application permission Graph offers.
graph_roles=$(az ad sp show --id "$GRAPH_APP_ID" \
  --query "appRoles[?contains(allowedMemberTypes, 'Application')].[id, value]" -o tsv)
# Role ids the identity already holds on Microsoft Graph.
assigned=$(az rest --method get \
  --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
  --query "value[?resourceId=='$graph_sp_id'].appRoleId" -o tsv)

role_id_of() {
  printf '%s\n' "$graph_roles" | awk -F '\t' -v v="$1" '$2 == v { print $1; exit }'
}
role_value_of() {
  printf '%s\n' "$graph_roles" | awk -F '\t' -v id="$1" '$1 == id { print $2; exit }'
}

status=0
expected_ids=""
for role in $GRAPH_APP_ROLES; do
  role_id=$(role_id_of "$role")
  if [ -z "$role_id" ]; then
    echo "  ERROR   $role: not an application permission of Microsoft Graph in this cloud" >&2
    status=1
    continue
  fi
  expected_ids="$expected_ids $role_id"
  if printf '%s\n' "$assigned" | grep -qx "$role_id"; then
    echo "  ok      $role"
  elif [ "$mode" = verify ]; then
    echo "  MISSING $role" >&2
    status=1
  elif az rest --method post \
      --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp_id\",\"appRoleId\":\"$role_id\"}" \
      >/dev/null; then
    echo "  granted $role"
  else
    echo "  FAILED  $role: the signed-in user needs Privileged Role Administrator or Global Administrator" >&2
    status=1
  fi
done

# Least privilege: flag any other Graph permission the identity holds (not removed automatically).
for held in $assigned; do
  case " $expected_ids " in
    *" $held "*) ;;
    *) echo "  EXTRA   $(role_value_of "$held") ($held): not needed by the app, remove it" >&2; status=1 ;;
  esac
done

if [ "$status" -ne 0 ]; then
  echo "Graph permissions are not exactly as required; see docs/deployment.md (Graph permissions)." >&2
fi
exit "$status"
