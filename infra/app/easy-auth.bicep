// App Service Authentication (Easy Auth) with Microsoft Entra ID in front of the Function
// App; function.bicep deploys this module only when enableAppServiceAuth=true. (A module,
// so the resource below is unconditional: checkov does not evaluate `resource ... = if`
// blocks correctly, and tools/lint_infra.sh rejects them in scanned files.)
//
// Callers need a token for the app registration (audience = its client id) that carries an
// app role, SignOuts.Create or SignOuts.Read; the code checks the role because
// REQUIRE_APP_ROLES=true, and function keys still apply on top. /api/health stays anonymous
// for probes. The platform drops any x-ms-client-principal* header a caller sends, so a
// forged principal header gets 401 (how to verify: docs/deployment.md).
param functionAppName string

@minLength(1)
@description('Client id (appId) of the app registration callers get tokens for.')
param authClientId string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // This is the authsettingsV2 config (Easy Auth itself). Checkov's rules for
  // Microsoft.Web/sites/config assume the legacy `authsettings` / `web` config schemas:
  // checkov:skip=CKV_AZURE_13:False positive: the check reads properties.enabled of the legacy authsettings schema; authsettingsV2 enables authentication with properties.platform.enabled=true (below).
  // checkov:skip=CKV_AZURE_63:False positive: httpLoggingEnabled belongs to the `web` config, not authsettingsV2; Function App logs go to Log Analytics (diagnostic setting in function.bicep).
  // checkov:skip=CKV_AZURE_65:False positive: detailedErrorLoggingEnabled belongs to the `web` config, not authsettingsV2.
  // checkov:skip=CKV_AZURE_66:False positive: requestTracingEnabled belongs to the `web` config, not authsettingsV2; requests are traced in Application Insights.
  // checkov:skip=CKV_AZURE_80:False positive: netFrameworkVersion belongs to the `web` config; this is a Python app.
  // checkov:skip=CKV_AZURE_88:False positive: Azure Files mounts belong to the azurestorageaccounts config; the app needs no file share.
  // checkov:skip=CKV_AZURE_222:False positive: publicNetworkAccess is a property of the site (see function.bicep), not of authsettingsV2.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          // v2 issuer of the tenant, in the deployment's cloud (login.microsoftonline.us, ...).
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
            'api://${authClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
