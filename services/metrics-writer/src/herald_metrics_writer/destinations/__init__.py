"""The metrics writer's destinations, one module each."""
