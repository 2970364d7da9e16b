"""mlinfra.triggers."""
