"""Local development tools (dev host, simulators, Azurite wrapper): never deployed."""
