"""What the service does: accept requests, process one task, fan out bulk jobs and count them,
answer queries, keep retention, sweep overdue tasks, deliver callbacks.

Use cases depend on the small ports in `ports.py` (typing.Protocol), not on concrete clients.
Must not import from `triggers/`."""
