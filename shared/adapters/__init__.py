"""The outside world: Microsoft Graph (msgraph-sdk), Table storage, Storage queues, credentials,
the storage connection. Each module is the only one that talks to its system.

Must not import from `usecases/` or `triggers/`."""
