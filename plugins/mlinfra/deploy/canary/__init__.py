"""Canary deploys."""

# The deploy DAG has a fixed number of approval tasks (Airflow's ApprovalOperator is a
# task, and a DAG's tasks are fixed at parse time: approve_1..approve_3 between segments
# 0..3): the fleet validation refuses a strategy that asks for more. Here, so that the
# DAG file reads it without importing the rollout or the strategy models.
MAX_APPROVAL_GATES = 3
