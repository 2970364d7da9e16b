"""Local stand-ins and launchers for the real components the tests talk to."""
