// What an operator is told, and where: alert rules on the telemetry the app exports
// (shared/adapters/telemetry.py), an availability test of /api/health, the action group they all
// notify, and the "Force sign-out" workbook. README "Operating it" says what each alert means.
// Queries live in alerts.json and workbook.json beside this file (tests/infra checks every table,
// column and dimension they name against what the code exports).
param applicationInsightsName string
param location string
param tags object = {}

@description('Email address the alerts notify (empty: none).')
param alertEmail string = ''

@secure()
@description('Webhook the alerts POST to, in the common alert schema (empty: none).')
param alertWebhookUrl string = ''

@description('Tasks ending with gave_up in one hour before the gave_up alert fires.')
param gaveUpThreshold int = 5

@description('Seconds from accepted to revoked (95th percentile over 15 minutes) before the slow-revocation alert fires.')
param timeToRevokeP95Seconds int = 60

@description('URL of the health endpoint the availability test calls.')
param healthUrl string

var queries = loadJsonContent('alerts.json')

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${applicationInsightsName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'signout'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

resource poisonMessages 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-poison-${applicationInsightsName}'
  location: location
  tags: tags
  properties: {
    displayName: queries.poisonMessages.displayName
    description: queries.poisonMessages.description
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: queries.poisonMessages.query
          timeAggregation: 'Total'
          metricMeasureColumn: queries.poisonMessages.measure
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource permissionDenied 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-permission-denied-${applicationInsightsName}'
  location: location
  tags: tags
  properties: {
    displayName: queries.permissionDenied.displayName
    description: queries.permissionDenied.description
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: queries.permissionDenied.query
          timeAggregation: 'Total'
          metricMeasureColumn: queries.permissionDenied.measure
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource gaveUp 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-gave-up-${applicationInsightsName}'
  location: location
  tags: tags
  properties: {
    displayName: queries.gaveUp.displayName
    description: queries.gaveUp.description
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: queries.gaveUp.query
          timeAggregation: 'Total'
          metricMeasureColumn: queries.gaveUp.measure
          operator: 'GreaterThan'
          threshold: gaveUpThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource timeToRevoke 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-time-to-revoke-${applicationInsightsName}'
  location: location
  tags: tags
  properties: {
    displayName: queries.timeToRevoke.displayName
    description: queries.timeToRevoke.description
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: queries.timeToRevoke.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: queries.timeToRevoke.measure
          operator: 'GreaterThan'
          threshold: timeToRevokeP95Seconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Standard availability test of the anonymous health endpoint from three regions.
resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: 'health-${applicationInsightsName}'
  location: location
  tags: union(tags, {
    'hidden-link:${applicationInsights.id}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: 'health-${applicationInsightsName}'
    Name: 'Force sign-out health'
    Enabled: true
    Frequency: 300
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'apac-sg-sin-azr'
      }
    ]
    Request: {
      RequestUrl: healthUrl
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthFailing 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-health-${applicationInsightsName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'GET /api/health fails from two or more test locations: storage or the Functions host is unavailable, or the app is stopped. Open /api/health for the failing check, then the function app\'s logs.'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: applicationInsights.id
      failedLocationCount: 2
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsights.id, 'force-signout-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Force sign-out'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: loadTextContent('workbook.json')
  }
}

output actionGroupId string = actionGroup.id
output workbookId string = workbook.id
