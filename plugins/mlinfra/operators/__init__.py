"""mlinfra.operators."""
