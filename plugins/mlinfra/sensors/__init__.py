"""mlinfra.sensors."""
