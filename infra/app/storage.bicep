// Storage account for the Functions host, the sign-out queues and the status table.
// Keyless: shared-key access is disabled, so the only way in is Entra ID (RBAC in
// rbac.bicep); there is no connection string or account key anywhere in this template.
param name string
param location string
param tags object = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_ZRS'

@description('Blob container the Flex Consumption app is deployed from.')
param deploymentContainerName string

@description('Log Analytics workspace for storage diagnostics (read/write/delete audit).')
param logAnalyticsWorkspaceId string

// Queues and table the app uses: the names are the contract with the code
// (SIGNOUT_QUEUE_NAME, BULK_QUEUE_NAME, BULK_PAGE_QUEUE_NAME, STATUS_TABLE_NAME in function.bicep).
// "<queue>-poison" is where the Functions host moves a message after maxDequeueCount.
param signOutQueueName string = 'signout-requests'
param bulkQueueName string = 'signout-bulk'
param bulkPageQueueName string = 'signout-bulk-pages'
param statusTableName string = 'signouttasks'

var queueNames = [
  signOutQueueName
  '${signOutQueueName}-poison'
  bulkQueueName
  '${bulkQueueName}-poison'
  bulkPageQueueName
  '${bulkPageQueueName}-poison'
]

// Containers the Functions host itself uses in AzureWebJobsStorage: function keys
// (azure-webjobs-secrets) and locks / host id leases (azure-webjobs-hosts). Created here so
// the blob role can be scoped to exactly these containers (rbac.bicep) instead of the account.
var hostContainerNames = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206:Default Standard_ZRS (three zones) because GRS/GZRS is not offered in every Flex Consumption region; choose geo-redundancy with the storageSkuName parameter. Queued messages are transient and Entra audit logs stay the authoritative record of revocations.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    isLocalUserEnabled: false
    isSftpEnabled: false
    dnsEndpointType: 'Standard'
    // checkov:skip=CKV_AZURE_59:The Flex Consumption app is not VNet-integrated (no private endpoints in this template), so it reaches storage over the public endpoint; access is Entra ID-only (shared keys disabled) and RBAC-scoped.
    publicNetworkAccess: 'Enabled'
    // checkov:skip=CKV_AZURE_35:Default action Allow for the same reason as CKV_AZURE_59: the app has no fixed egress IPs or VNet; every request still needs an Entra ID token with a data role.
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in hostContainerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource statusTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: statusTableName
}

// Audit trail: every read/write/delete on blobs, queues and the status table goes to Log
// Analytics (who touched a sign-out request or its status record, and when).
var storageLogCategories = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueNames array = queueNames
output statusTableName string = statusTable.name
// Every container the UAMI gets Storage Blob Data Owner on (rbac.bicep): the deployment
// package and the host's own two containers. Nothing else in the account.
output hostBlobContainerNames array = concat([
  deploymentContainer.name
], hostContainerNames)
