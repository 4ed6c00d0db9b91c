// Force sign-out service: one `azd up` deploys a keyless, least-privilege production setup.
//
//   resource group
//   ├─ user-assigned managed identity (UAMI): the ONLY identity the app uses, for storage,
//   │  Application Insights and Microsoft Graph
//   ├─ storage account (shared keys disabled, TLS 1.2, no public blob access)
//   │  ├─ queues  signout-requests, signout-bulk, signout-bulk-pages (each +-poison)
//   │  ├─ table   signouttasks
//   │  └─ blob containers: deployment package + Functions host (keys, locks)
//   ├─ Log Analytics workspace + workspace-based Application Insights (local auth disabled)
//   ├─ Flex Consumption plan + Function App (Python 3.11)
//   ├─ Azure RBAC for the UAMI, scoped to the storage account / containers / App Insights
//   └─ alert rules, an availability test of /api/health, their action group and the
//      "Force sign-out" workbook (app/alerts.bicep; README "Operating it")
//   Microsoft Entra ID (Microsoft Graph Bicep extension, infra/graph/*.bicep):
//   ├─ Graph application permissions for the UAMI (User.RevokeSessions.All, User.Read.All,
//   │  GroupMember.Read.All), unless grantGraphPermissions=false (then hooks/postprovision.sh)
//   └─ optional app registration with app roles for App Service Authentication (Easy Auth)
//
// See docs/deployment.md for prerequisites and for who needs which Entra role.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to derive a unique token for resource names.')
param environmentName string

@minLength(1)
@description('Region for all resources; must support the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional: existing resource group name. Default: rg-<environmentName>.')
param resourceGroupName string = ''

// ---------------------------------------------------------------------------
// Application behaviour (written to app settings; see function.bicep)
// ---------------------------------------------------------------------------
@description('Microsoft Graph root for the cloud the tenant lives in (sovereign clouds: graph.microsoft.us, dod-graph.microsoft.us, microsoftgraph.chinacloudapi.cn).')
@allowed([
  'https://graph.microsoft.com'
  'https://graph.microsoft.us'
  'https://dod-graph.microsoft.us'
  'https://microsoftgraph.chinacloudapi.cn'
])
param graphEndpoint string = 'https://graph.microsoft.com'

@description('Comma-separated object ids / UPNs that must never be signed out (break-glass accounts, the operators themselves).')
param protectedUsers string = ''

@minValue(1)
@maxValue(3650)
@description('Days the status records of sign-out tasks are kept (app setting RETENTION_DAYS).')
param retentionDays int = 365

@description('Allow sign-out requests for every user in the tenant (ALLOW_ALL_USERS). Keep false unless you know why.')
param allowAllUsers bool = false

@minValue(0)
@maxValue(100000000)
@description('A bulk job (group or all users) of this many users or more waits for approval by a second person holding SignOuts.Approve (BULK_APPROVAL_THRESHOLD); approvals need enableAppServiceAuth, else such requests are refused. 0 turns the rule off: unsafe.')
param bulkApprovalThreshold int = 1000

@minValue(1)
@maxValue(604800)
@description('Seconds an approval request waits for a decision before the job expires unrun (BULK_APPROVAL_TTL_SECONDS).')
param bulkApprovalTtlSeconds int = 3600

@description('Comma-separated host names allowed as callback targets (CALLBACK_ALLOWED_HOSTS). Empty = the Logic Apps hosts.')
param callbackAllowedHosts string = ''

@minValue(1)
@maxValue(10080)
@description('Minutes a failing sign-out keeps being retried before it is parked as failed (RETRY_BUDGET_MINUTES): outlast a Graph or identity incident.')
param retryBudgetMinutes int = 60

@minValue(1)
@maxValue(60)
@description('Base of the exponential retry back-off, in seconds (RETRY_BASE_SECONDS).')
param retryBaseSeconds int = 2

@minValue(1)
@maxValue(60)
@description('Timeout of a single Microsoft Graph call, in seconds (GRAPH_TIMEOUT_SECONDS).')
param graphTimeoutSeconds int = 15

// ---------------------------------------------------------------------------
// Scale (the arithmetic against the Graph write quota is in app/function.bicep)
// ---------------------------------------------------------------------------
@minValue(1)
@maxValue(1000)
@description('Flex Consumption maximumInstanceCount per scale group. 1 keeps Graph writes under the 20/s per-app quota; read app/function.bicep before raising it.')
param maximumInstanceCount int = 1

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory in MB.')
param instanceMemoryMB int = 2048

// ---------------------------------------------------------------------------
// Caller authorization (optional App Service Authentication with Entra ID)
// ---------------------------------------------------------------------------
@description('Enable App Service Authentication (Entra ID): every endpoint except /api/health then needs an Entra token with an app role, in addition to the function key.')
param enableAppServiceAuth bool = false

@description('Client id of an existing app registration for App Service Authentication. Empty = the template creates one (needs the Graph Bicep extension and permission to register applications).')
param authClientId string = ''

@description('Object ids of service principals / users / groups to assign the SignOuts.Create app role (e.g. the managed identity of a Logic App or Sentinel playbook). Only used when the template creates the app registration.')
param signOutCreatorPrincipalIds array = []

@description('Object ids of service principals / users / groups to assign the SignOuts.Read app role. Only used when the template creates the app registration.')
param statusReaderPrincipalIds array = []

@description('Object ids of users / groups / service principals to assign the SignOuts.Approve app role (the second person of a bulk job). Never the callers that create jobs. Only used when the template creates the app registration.')
param bulkApproverPrincipalIds array = []

// ---------------------------------------------------------------------------
// Microsoft Graph application permissions for the managed identity
// ---------------------------------------------------------------------------
@description('Grant the Graph application permissions to the managed identity from this template (deployer needs Privileged Role Administrator or Global Administrator). false = an administrator runs infra/hooks/postprovision.sh (azd runs it after provisioning).')
param grantGraphPermissions bool = true

// ---------------------------------------------------------------------------
// Platform
// ---------------------------------------------------------------------------
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
@description('Storage redundancy. The status table is the only durable state; ZRS/GZRS where the region offers it.')
param storageSkuName string = 'Standard_ZRS'

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days (application logs, storage and Function App diagnostics).')
param logAnalyticsRetentionDays int = 90

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-signout-${resourceToken}'
// Container names: 3-63 chars, lowercase letters, digits and dashes.
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'

@description('Email address the alerts notify (empty: none; add receivers to the action group later).')
param alertEmail string = ''

@secure()
@description('Webhook the alerts POST to in the common alert schema (empty: none).')
param alertWebhookUrl string = ''

@description('Tasks ending with gave_up in one hour before the gave_up alert fires.')
@minValue(0)
param alertGaveUpThreshold int = 5

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-signout-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-signout-${resourceToken}'
    applicationInsightsName: 'appi-signout-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logAnalyticsRetentionDays
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stsignout${take(resourceToken, 15)}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    blobContainerNames: storage.outputs.hostBlobContainerNames
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// App registration for App Service Authentication, created only when enabled and no
// existing client id was given. Lives in infra/graph/ (Graph extension; see lint_infra.sh).
module apiApp 'graph/api-app.bicep' = if (enableAppServiceAuth && empty(authClientId)) {
  name: 'api-app-registration'
  scope: rg
  params: {
    uniqueName: 'signout-api-${resourceToken}'
    displayName: 'Force sign-out API (${environmentName})'
    signOutCreatorPrincipalIds: signOutCreatorPrincipalIds
    statusReaderPrincipalIds: statusReaderPrincipalIds
    bulkApproverPrincipalIds: bulkApproverPrincipalIds
  }
}

var effectiveAuthClientId = !enableAppServiceAuth ? '' : (!empty(authClientId) ? authClientId : apiApp.outputs.appId)

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-signout-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    graphEndpoint: graphEndpoint
    protectedUsers: protectedUsers
    retentionDays: retentionDays
    allowAllUsers: allowAllUsers
    bulkApprovalThreshold: bulkApprovalThreshold
    bulkApprovalTtlSeconds: bulkApprovalTtlSeconds
    callbackAllowedHosts: callbackAllowedHosts
    retryBudgetMinutes: retryBudgetMinutes
    retryBaseSeconds: retryBaseSeconds
    graphTimeoutSeconds: graphTimeoutSeconds
    enableAppServiceAuth: enableAppServiceAuth
    authClientId: effectiveAuthClientId
  }
  // The host starts as soon as the site exists: give it its storage roles first, and its
  // Graph permissions (when the template grants them) before any code can request a Graph
  // token: managed identity tokens are cached for up to 24 h, permissions and all.
  dependsOn: [
    rbac
    graphPermissions
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    location: location
    tags: tags
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
    gaveUpThreshold: alertGaveUpThreshold
    healthUrl: '${function.outputs.uri}/api/health'
  }
}

// Microsoft Graph application permissions for the UAMI (Graph extension; see lint_infra.sh).
module graphPermissions 'graph/graph-permissions.bicep' = if (grantGraphPermissions) {
  name: 'graph-permissions'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

// Outputs become azd environment values (used by hooks/postprovision.sh and docs).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = function.outputs.name
output AZURE_FUNCTION_URL string = function.outputs.uri
output SERVICE_API_NAME string = function.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output MANAGED_IDENTITY_NAME string = identity.outputs.name
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output GRAPH_ENDPOINT string = graphEndpoint
output GRAPH_PERMISSIONS_GRANTED_BY_TEMPLATE bool = grantGraphPermissions
output APP_SERVICE_AUTH_ENABLED bool = enableAppServiceAuth
output APP_SERVICE_AUTH_CLIENT_ID string = effectiveAuthClientId
