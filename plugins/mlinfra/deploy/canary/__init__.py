"""Canary deploys."""
