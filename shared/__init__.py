"""The force sign-out service's own package, in four layers (imports only point down the list):

- `triggers/`: the Azure Functions edge (blueprints, HTTP and queue plumbing, authorization).
- `usecases/`: what the service does (intake, processing a task, bulk jobs, queries, retention,
  the sweeper, callbacks), against the small ports in `usecases/ports.py`.
- `domain/`: values and rules with no I/O (identifiers, records and their transitions, messages,
  request parsing, problems, alert payload parsers, pacing arithmetic).
- `adapters/`: Microsoft Graph, Table storage, queues, credentials, the storage connection.

`runtime.py` is the one composition root: it builds the adapters once per process and owns
their lifecycle, the per-process caches and the logging policy. `settings.py` reads app settings.
"""
