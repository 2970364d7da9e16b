"""mlinfra.reports."""
