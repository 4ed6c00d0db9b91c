// Microsoft Graph application permissions (app roles) for the user-assigned managed
// identity, granted through the Microsoft Graph Bicep extension. Granting an app role of
// Microsoft Graph is admin consent: the identity running the deployment needs the Entra
// role Privileged Role Administrator (or Global Administrator). Without it, deploy with
// grantGraphPermissions=false and have an administrator run infra/hooks/postprovision.sh,
// which grants exactly the same list (docs/deployment.md).
//
// Only Microsoft.Graph/* resources belong in infra/graph/: checkov's Bicep parser cannot
// read `extension` lines, so tools/lint_infra.sh parses these files with a current
// pycep-parser and checks that they declare nothing but Graph resources.
extension microsoftGraphV1

@description('Principal (object) id of the managed identity that calls Microsoft Graph.')
param principalId string

// Least privilege for what the app does, nothing broader:
//   User.RevokeSessions.All  POST /users/{id}/revokeSignInSessions (not User.ReadWrite.All)
//   User.Read.All            resolve UPN -> object id, verify the user exists / is enabled
//   GroupMember.Read.All     bulk sign-out of a group's members (not Group.Read.All / Directory.Read.All)
// Keep in sync with GRAPH_APP_ROLES in infra/hooks/postprovision.sh (tests/infra check both).
var graphAppRoles = [
  'User.RevokeSessions.All'
  'User.Read.All'
  'GroupMember.Read.All'
]

// Microsoft Graph's service principal: the same well-known appId in every cloud.
resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

// Role ids are looked up by value on Graph's own service principal rather than hard-coded.
resource graphAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for appRole in graphAppRoles: {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(microsoftGraph.appRoles, role => role.value == appRole)[0].id
}]

output grantedAppRoles array = graphAppRoles
