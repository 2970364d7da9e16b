"""Weight -> canary replicas: the share is at least the weight, the stable is never scaled."""

from __future__ import annotations

import pytest

from mlinfra.deploy.canary.replicas import canary_replicas, canary_share


@pytest.mark.parametrize(
    ("stable", "weight", "canary"),
    [
        (4, 20, 1),
        (4, 50, 4),
        (3, 25, 1),
        (3, 10, 1),
        (10, 10, 2),
        (1, 99, 99),
        (0, 50, 1),
        (2, 1, 1),
        (5, 75, 15),
    ],
)
def test_canary_replicas(stable: int, weight: int, canary: int) -> None:
    assert canary_replicas(stable, weight) == canary


def test_the_share_is_never_below_the_weight_and_minimal() -> None:
    for stable in range(0, 30):
        for weight in range(1, 100):
            c = canary_replicas(stable, weight)
            assert c >= 1
            assert canary_share(stable, c) >= weight / 100 or stable == 0
            # One pod fewer would fall below the weight (unless one pod is the floor).
            assert c == 1 or canary_share(stable, c - 1) < weight / 100


@pytest.mark.parametrize("weight", [0, 100, -1, 50.0, True])
def test_bad_weights_are_refused(weight: object) -> None:
    with pytest.raises(ValueError, match="1 to 99"):
        canary_replicas(3, weight)  # type: ignore[arg-type]


def test_share() -> None:
    assert canary_share(3, 1) == 0.25
    assert canary_share(0, 0) == 0.0
