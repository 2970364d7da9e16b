"""How long a deploy waits, from the environment (Prometheus durations), with safe defaults.

==================================  =======  ==========================================
variable                            default  what
==================================  =======  ==========================================
``MLINFRA_DEPLOY_ROLLOUT_TIMEOUT``  15m      rollout of the new (or rolled back) spec
``MLINFRA_DEPLOY_MODEL_TIMEOUT``    10m      TF Serving reporting the version AVAILABLE
``MLINFRA_DEPLOY_POLL_INTERVAL``    5s       triggers' polling interval
``MLINFRA_DEPLOY_PROGRESS_DEADLINE`` 10m     the Deployment's ``progressDeadlineSeconds``
``MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE`` 10m     unused version ConfigMaps younger than this stay
==================================  =======  ==========================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlinfra.durations import parse_duration


@dataclass(frozen=True)
class DeploySettings:
    rollout_timeout: float = 900.0
    model_timeout: float = 600.0
    poll_interval: float = 5.0
    progress_deadline: float = 600.0
    config_gc_min_age: float = 600.0

    @classmethod
    def from_env(cls) -> DeploySettings:
        def get(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if not raw:
                return default
            try:
                return parse_duration(raw)
            except ValueError as e:
                raise ValueError(f"environment variable {name}: {e}") from None

        d = cls()
        return cls(
            rollout_timeout=get("MLINFRA_DEPLOY_ROLLOUT_TIMEOUT", d.rollout_timeout),
            model_timeout=get("MLINFRA_DEPLOY_MODEL_TIMEOUT", d.model_timeout),
            poll_interval=max(get("MLINFRA_DEPLOY_POLL_INTERVAL", d.poll_interval), 0.05),
            progress_deadline=max(get("MLINFRA_DEPLOY_PROGRESS_DEADLINE", d.progress_deadline), 1.0),
            config_gc_min_age=get("MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE", d.config_gc_min_age),
        )
