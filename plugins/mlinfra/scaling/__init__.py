"""mlinfra.scaling."""
