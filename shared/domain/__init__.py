"""Values and rules with no I/O: identifiers, task and job records and their allowed transitions,
queue messages and their schema, request parsing, problems, text rules, pacing arithmetic, alert
payload parsers.

Must not import from `adapters/`, `usecases/` or `triggers/`, nor do any I/O."""
