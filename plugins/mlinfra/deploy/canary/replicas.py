"""A canary weight realised as replicas, as Argo Rollouts does without a traffic router.

The stable Deployment is never scaled; the canary gets enough pods that its share of
the Service's endpoints is at least the weight (rounded up, at least one pod):
``c = max(1, ceil(s * w / (100 - w)))``, so ``c / (s + c) >= w / 100``.

>>> canary_replicas(4, 20)
1
>>> canary_replicas(4, 50)
4
>>> canary_replicas(3, 10), round(canary_share(3, 1), 2)
(1, 0.25)
"""

from __future__ import annotations


def canary_replicas(stable_replicas: int, weight: int) -> int:
    """Canary pods for ``weight`` percent of the pods behind the Service, next to ``stable_replicas``."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
        raise ValueError(f"a canary weight is a percentage from 1 to 99, got {weight!r}")
    if isinstance(stable_replicas, bool) or not isinstance(stable_replicas, int) or stable_replicas < 0:
        raise ValueError(f"stable replicas must be an integer >= 0, got {stable_replicas!r}")
    # Integer arithmetic: ceil(s * w / (100 - w)) without float rounding (3 * 25 / 75 is exactly 1).
    return max(1, -(-stable_replicas * weight // (100 - weight)))


def canary_share(stable_replicas: int, canary_replicas: int) -> float:
    """The canary's actual share of the pods (0.0 when there are none at all)."""
    total = stable_replicas + canary_replicas
    return canary_replicas / total if total else 0.0
