// Flex Consumption plan + Function App (Python 3.11) running as the user-assigned managed
// identity, with every app setting the code reads. No connection string or key: host
// storage, the app's own queue/table clients, Application Insights and Microsoft Graph all
// authenticate with the identity.
param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param logAnalyticsWorkspaceId string

// Names shared with storage.bicep (which creates them) and with the code's defaults.
param signOutQueueName string = 'signout-requests'
param bulkQueueName string = 'signout-bulk'
param bulkPageQueueName string = 'signout-bulk-pages'
param statusTableName string = 'signouttasks'

// ---------------------------------------------------------------------------------------
// Scale settings vs. the Microsoft Graph write quota
// ---------------------------------------------------------------------------------------
// Graph throttles identity & access writes (POST /users/{id}/revokeSignInSessions is one)
// at 3,000 requests per 150 s per app per tenant = 20 writes/s, and 18,000 per 5 min per
// tenant = 60/s shared with every other app in the tenant.
//
// Concurrency per instance (host.json, queue trigger): batchSize 16 + newBatchThreshold 8
// => up to 24 messages in flight per instance (a new batch of 16 is fetched whenever
// fewer than 8 are still running).
//
// Unpaced, one instance would call Graph at
//   24 in flight / 0.300 s per revoke =  80 writes/s  (slow Graph)
//   24 in flight / 0.100 s per revoke = 240 writes/s  (fast Graph)
// i.e. 4x to 12x the 20/s per-app quota from a SINGLE instance. So the rate cannot come
// from concurrency settings; it comes from the app's own pacer, which runs per process
// (one Python worker process per instance). The instance cap must therefore keep the
// number of pacers at one:
//   N instances x (pacer <= 20/s) <= 20/s   =>   maximumInstanceCount N = 1
// With N = 2 the worst case is already 2 x 20 = 40/s: sustained 429s, retries that also
// count against the quota, and sign-outs delayed instead of accelerated.
//
// One instance at the quota still signs out 20/s = 1,200/min = 72,000/h (a 10,000-user
// bulk job in about 8.5 minutes), which is the tenant's ceiling for this app anyway.
//
// Flex Consumption applies maximumInstanceCount to each per-function scale group: the HTTP
// functions together, and each queue-triggered function on its own. Bulk writes run in the
// bulk_worker group, paced to GRAPH_WRITES_PER_SECOND (19.4/s = 97 % of 20/s); alert-driven
// and single sign-outs run in the signout_worker group and are never held back by the pacer
// (they are few; when they push the app over the quota, Graph's 429 + Retry-After halves the
// bulk pace until it recovers). Bulk enumeration (bulk_pages) only reads Graph, and reads have
// their own, larger quota. Always-ready instances are not used; the app scales to zero.
//
// Raise maximumInstanceCount only together with GRAPH_WRITES_PER_SECOND set to 19.4/N.
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 1

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Concurrent HTTP requests per instance before the HTTP group scales out (the handlers are async and only validate, read Graph and enqueue).')
param httpPerInstanceConcurrency int = 16

// ---------------------------------------------------------------------------------------
// Application settings (see shared/settings.py)
// ---------------------------------------------------------------------------------------
@allowed([
  'https://graph.microsoft.com'
  'https://graph.microsoft.us'
  'https://dod-graph.microsoft.us'
  'https://microsoftgraph.chinacloudapi.cn'
])
param graphEndpoint string = 'https://graph.microsoft.com'
param protectedUsers string = ''
param retentionDays int = 365
param allowAllUsers bool = false
param callbackAllowedHosts string = ''
@description('Azure Monitor dimension / custom property names that hold a user; empty = the built-in defaults (they are replaced, not extended).')
param alertUserDimensions string = ''
param retryBudgetMinutes int = 60
param retryBaseSeconds int = 2
param graphTimeoutSeconds int = 15
@description('Bulk Graph writes per second per instance: 97 % of the 3,000 per 150 s app+tenant quota. Divide by maximumInstanceCount.')
param graphWritesPerSecond string = '19.4'
@description('A bulk job of this many users or more waits for a second person\'s approval (SignOuts.Approve); 0 turns the rule off (unsafe).')
param bulkApprovalThreshold int = 1000
@description('Seconds an approval request waits for a decision before the job expires.')
param bulkApprovalTtlSeconds int = 3600

@description('Enable App Service Authentication (Entra ID) in front of every endpoint except /api/health.')
param enableAppServiceAuth bool = false

@description('Client id (appId) of the app registration callers get tokens for. Required when enableAppServiceAuth is true.')
param authClientId string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var appSettings = [
  // Host storage, identity-based: service URIs + the managed identity, no connection string.
  // The app's own queue/table clients and the queue trigger (connection="AzureWebJobsStorage")
  // reuse this same connection.
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  // ManagedIdentityCredential for Microsoft Graph.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  // Telemetry with Entra ID (local auth is disabled on the component).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${identityClientId}'
  }
  // The Python worker hands the host's trace context to the app's OpenTelemetry (host.json
  // telemetryMode: OpenTelemetry); the app exports with the distro (shared/adapters/telemetry.py).
  {
    name: 'PYTHON_ENABLE_OPENTELEMETRY'
    value: 'true'
  }
  {
    name: 'GRAPH_ENDPOINT'
    value: graphEndpoint
  }
  {
    name: 'SIGNOUT_QUEUE_NAME'
    value: signOutQueueName
  }
  {
    name: 'BULK_QUEUE_NAME'
    value: bulkQueueName
  }
  {
    name: 'BULK_PAGE_QUEUE_NAME'
    value: bulkPageQueueName
  }
  {
    name: 'STATUS_TABLE_NAME'
    value: statusTableName
  }
  {
    name: 'PROTECTED_USERS'
    value: protectedUsers
  }
  {
    name: 'RETRY_BUDGET_MINUTES'
    value: string(retryBudgetMinutes)
  }
  {
    name: 'RETRY_BASE_SECONDS'
    value: string(retryBaseSeconds)
  }
  {
    name: 'GRAPH_TIMEOUT_SECONDS'
    value: string(graphTimeoutSeconds)
  }
  {
    name: 'ALLOW_ALL_USERS'
    value: allowAllUsers ? 'true' : 'false'
  }
  {
    name: 'CALLBACK_ALLOWED_HOSTS'
    value: callbackAllowedHosts
  }
  {
    name: 'REQUIRE_APP_ROLES'
    value: enableAppServiceAuth ? 'true' : 'false'
  }
  {
    name: 'RETENTION_DAYS'
    value: string(retentionDays)
  }
  {
    name: 'GRAPH_WRITES_PER_SECOND'
    value: graphWritesPerSecond
  }
  {
    name: 'GRAPH_PAGE_SIZE'
    value: '999'
  }
  {
    // A job reads its next page once the bulk queue holds under half a page (~500 messages,
    // ~25 s of work at 19.4 writes/s): short queues, and a cancel leaves ~1,500 tasks to skip.
    name: 'BULK_BACKLOG_PAGES'
    value: '0.5'
  }
  {
    name: 'ALERT_USER_DIMENSIONS'
    value: alertUserDimensions
  }
  {
    // Needs REQUIRE_APP_ROLES (enableAppServiceAuth) to approve anything: without it, bulk
    // requests at or above the threshold are refused.
    name: 'BULK_APPROVAL_THRESHOLD'
    value: string(bulkApprovalThreshold)
  }
  {
    name: 'BULK_APPROVAL_TTL_SECONDS'
    value: string(bulkApprovalTtlSeconds)
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy of a Flex Consumption plan depends on the region and is not needed here: a lost zone only delays queued sign-outs (messages wait in zone-redundant storage), it does not lose them.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Public endpoint by design: Azure Monitor action groups, Logic Apps and Sentinel playbooks call it from outside any VNet; every route except /api/health needs a function key, plus an Entra ID token with an app role when enableAppServiceAuth=true.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with function keys and optionally Entra ID tokens (Easy Auth); none of them (action groups, Logic Apps, Sentinel) can present client certificates.
  // checkov:skip=CKV_AZURE_212:siteConfig.numberOfWorkers does not apply to Flex Consumption; instances are event-driven and capped at maximumInstanceCount on purpose (Graph write quota, see above).
  // checkov:skip=CKV_AZURE_213:App Service health check (healthCheckPath) is not used on the Flex Consumption plan, whose instances are managed by the scale controller; /api/health is exposed anonymously for external probes instead.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  // The user-assigned identity only: no system-assigned identity to forget about.
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No FTP / SCM basic-auth publishing credentials: azd deploys with Entra ID (OneDeploy).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Optional App Service Authentication (Easy Auth, Entra ID): its own module so that the
// resource itself is unconditional (checkov evaluates conditional resources wrongly).
module easyAuth 'easy-auth.bicep' = if (enableAppServiceAuth) {
  name: 'easy-auth'
  params: {
    functionAppName: functionApp.name
    authClientId: authClientId
  }
}

resource functionAppDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
