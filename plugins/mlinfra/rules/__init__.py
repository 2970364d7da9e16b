"""mlinfra.rules."""
