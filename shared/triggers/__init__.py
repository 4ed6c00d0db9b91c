"""The Azure Functions edge: blueprints and their HTTP/queue plumbing, authorization declared
once per route, each queue trigger naming the message kinds it accepts.

Belongs here: `azure.functions` types, request parsing glue, rendering responses. Must not hold
business rules (they are use cases) nor talk to Graph or storage directly (adapters, via the
runtime)."""
