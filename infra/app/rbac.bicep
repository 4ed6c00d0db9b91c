// Azure RBAC for the user-assigned managed identity: only the data-plane roles the app
// uses, each on the narrowest scope that works. No management-plane roles, no roles at
// resource-group or subscription scope, nothing for human users.
//
//   role                           scope                        why
//   Storage Queue Data Contributor storage account              queue trigger (read, delete, and add when
//                                                               moving to -poison), the HTTP trigger enqueues
//   Storage Table Data Contributor storage account              status records (signouttasks); host diagnostics
//   Storage Blob Data Owner        3 containers only            deployment package (Flex), function keys
//                                                               (azure-webjobs-secrets), host locks (azure-webjobs-hosts)
//   Monitoring Metrics Publisher   Application Insights         telemetry ingestion with Entra ID (local auth disabled)
//
// Queue and table roles are on the storage account rather than single queues/tables:
// the Functions host also creates and uses its own queues/tables there, and the account
// holds nothing else. The Microsoft Graph permissions are not Azure RBAC: see
// infra/graph/graph-permissions.bicep.
@description('Principal (object) id of the user-assigned managed identity.')
param principalId string
param storageAccountName string

@description('Blob containers the identity gets Storage Blob Data Owner on.')
param blobContainerNames array
param applicationInsightsName string

// Built-in role definition ids (same in every Azure cloud).
var roles = {
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for containerName in blobContainerNames: {
  parent: blobService
  name: containerName
}]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Force sign-out app: sign-out queues (enqueue, trigger, poison).'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Force sign-out app: status table.'
  }
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (containerName, i) in blobContainerNames: {
  name: guid(containers[i].id, principalId, roles.storageBlobDataOwner)
  scope: containers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Force sign-out app: Functions host container ${containerName}.'
  }
}]

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Force sign-out app: Application Insights ingestion with Entra ID.'
  }
}
