"""The HTTP layer: the OCI Distribution / Docker Registry v2 API over the registry services."""
