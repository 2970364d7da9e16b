"""mlinfra.ui."""
