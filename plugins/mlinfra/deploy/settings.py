"""How long a deploy waits, from the environment (Prometheus durations), with safe defaults.

The variables, their defaults and meanings are registered once, in
:data:`mlinfra.settings.ENVIRONMENT` (the README's settings table):
``MLINFRA_DEPLOY_ROLLOUT_TIMEOUT``, ``MLINFRA_DEPLOY_MODEL_TIMEOUT``,
``MLINFRA_DEPLOY_POLL_INTERVAL``, ``MLINFRA_DEPLOY_PROGRESS_DEADLINE``,
``MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE`` and ``MLINFRA_DEPLOY_EXPECTED_DURATION`` (None when
unset: :func:`mlinfra.deploy.deadline.expected_duration` derives it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlinfra.settings import default_duration, env_duration, env_optional_duration


@dataclass(frozen=True)
class DeploySettings:
    rollout_timeout: float = default_duration("MLINFRA_DEPLOY_ROLLOUT_TIMEOUT")
    model_timeout: float = default_duration("MLINFRA_DEPLOY_MODEL_TIMEOUT")
    poll_interval: float = default_duration("MLINFRA_DEPLOY_POLL_INTERVAL")
    progress_deadline: float = default_duration("MLINFRA_DEPLOY_PROGRESS_DEADLINE")
    config_gc_min_age: float = default_duration("MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE")
    expected_duration: float | None = None
    # MLINFRA_DEPLOY_EXPECTED_DURATION=off: the DAG carries no Deadline Alert.
    deadline_enabled: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeploySettings:
        def get(name: str) -> float:
            return env_duration(name, environ)

        env = os.environ if environ is None else environ
        off = env.get("MLINFRA_DEPLOY_EXPECTED_DURATION", "").strip().lower() == "off"

        return cls(
            rollout_timeout=get("MLINFRA_DEPLOY_ROLLOUT_TIMEOUT"),
            model_timeout=get("MLINFRA_DEPLOY_MODEL_TIMEOUT"),
            poll_interval=max(get("MLINFRA_DEPLOY_POLL_INTERVAL"), 0.05),
            progress_deadline=max(get("MLINFRA_DEPLOY_PROGRESS_DEADLINE"), 1.0),
            config_gc_min_age=get("MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE"),
            expected_duration=None
            if off
            else env_optional_duration("MLINFRA_DEPLOY_EXPECTED_DURATION", environ),
            deadline_enabled=not off,
        )
