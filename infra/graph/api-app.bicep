// App registration callers authenticate against when App Service Authentication (Easy
// Auth) is enabled. It declares three app roles and requires assignment, so only principals
// that were explicitly given a role can even get a token for the API:
//   SignOuts.Create   create sign-outs and bulk jobs (Logic Apps, Sentinel playbooks, alerts)
//   SignOuts.Read     read task / job status
//   SignOuts.Approve  approve or reject a bulk job someone else requested (two-person rule)
// No client secret or certificate: Easy Auth here only validates bearer tokens; it never
// signs users in, so the app needs no credential of its own.
//
// Deployer needs to be allowed to register applications (default user setting, otherwise
// Application Developer); assigning the roles below to other principals as owner of this
// app needs no further Entra role. Only Microsoft.Graph/* resources belong in infra/graph/.
extension microsoftGraphV1

@description('Immutable unique name of the app registration (idempotent re-deployments).')
param uniqueName string
param displayName string

@description('Object ids of principals to assign SignOuts.Create.')
param signOutCreatorPrincipalIds array = []

@description('Object ids of principals to assign SignOuts.Read.')
param statusReaderPrincipalIds array = []

@description('Object ids of principals to assign SignOuts.Approve (never those that create jobs).')
param bulkApproverPrincipalIds array = []

var createRoleId = guid(uniqueName, 'SignOuts.Create')
var readRoleId = guid(uniqueName, 'SignOuts.Read')
var approveRoleId = guid(uniqueName, 'SignOuts.Approve')

resource apiApplication 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  api: {
    // v2 tokens: issuer https://login.microsoftonline.com/<tenant>/v2.0 and aud = client id,
    // matching the openIdIssuer/allowedAudiences configured in app/function.bicep.
    requestedAccessTokenVersion: 2
  }
  appRoles: [
    {
      id: createRoleId
      value: 'SignOuts.Create'
      displayName: 'Create sign-outs'
      description: 'Create force sign-out requests and bulk sign-out jobs.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
    {
      id: readRoleId
      value: 'SignOuts.Read'
      displayName: 'Read sign-out status'
      description: 'Read the status of sign-out requests and bulk jobs.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
    {
      id: approveRoleId
      value: 'SignOuts.Approve'
      displayName: 'Approve bulk sign-outs'
      description: 'Approve or reject a bulk sign-out job that another principal requested.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
  ]
}

resource apiServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: apiApplication.appId
  // Tokens are only issued to principals holding one of the app roles.
  appRoleAssignmentRequired: true
}

resource creatorAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principal in signOutCreatorPrincipalIds: {
  principalId: principal
  resourceId: apiServicePrincipal.id
  appRoleId: createRoleId
}]

resource readerAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principal in statusReaderPrincipalIds: {
  principalId: principal
  resourceId: apiServicePrincipal.id
  appRoleId: readRoleId
}]

resource approverAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principal in bulkApproverPrincipalIds: {
  principalId: principal
  resourceId: apiServicePrincipal.id
  appRoleId: approveRoleId
}]

output appId string = apiApplication.appId
output servicePrincipalId string = apiServicePrincipal.id
