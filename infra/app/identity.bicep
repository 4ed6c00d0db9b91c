// The user-assigned managed identity the Function App uses for everything: host storage
// (AzureWebJobsStorage__*), its own queue/table clients, Application Insights ingestion
// and Microsoft Graph (AZURE_CLIENT_ID). A user-assigned identity, unlike a system-assigned
// one, exists before the app does, so its roles and Graph permissions are in place when
// the host first starts, and it survives re-creating the app.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
