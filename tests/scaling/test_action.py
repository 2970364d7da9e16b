"""mlinfra.scaling.action: what one scale task does, as a pure function of what it read."""

from __future__ import annotations

import pytest

from mlinfra.exceptions import ScaleRequestError
from mlinfra.scaling.action import ownership_verdict, scale_action, scale_request, wait_outcome

WHERE = "serving/hpt"


def request(replicas: object = 4, from_replicas: object = 2, trigger: str = "metric"):  # type: ignore[no-untyped-def]
    return scale_request(replicas=replicas, from_replicas=from_replicas, trigger=trigger, reason="load")


def test_request_parses_templated_numbers() -> None:
    r = scale_request(replicas="4", from_replicas="None", trigger="manual", reason="launch")
    assert (r.replicas, r.from_replicas, r.trigger) == (4, None, "manual")


def test_request_names_every_problem() -> None:
    with pytest.raises(ScaleRequestError) as e:
        scale_request(replicas="-1", from_replicas="x", trigger="cron", reason=" ")
    assert e.value.problems == [
        "trigger must be one of metric, alert, manual, bounds, got 'cron'",
        "replicas must be an integer >= 0, got '-1'",
        "from_replicas must be an integer >= 0, got 'x'",
        "reason is required: say why (it goes to the audit trail)",
    ]


def test_not_owned_is_no_verdict() -> None:
    assert ownership_verdict(request(), where=WHERE, owner=None) is None


def test_owned_deployment_is_skipped_by_the_sweep() -> None:
    v = ownership_verdict(request(), where=WHERE, owner="HorizontalPodAutoscaler/web")
    assert v is not None
    assert (v.outcome, v.before, v.refuse) == ("skipped", 2, False)
    assert v.message == "serving/hpt is owned by HorizontalPodAutoscaler/web: mlinfra does not scale it"


def test_owned_deployment_refuses_a_person() -> None:
    v = ownership_verdict(
        request(trigger="manual", from_replicas=None), where=WHERE, owner="ScaledObject/web"
    )
    assert v is not None
    assert v.refuse
    assert v.hint == "change the ScaledObject's bounds instead, or remove it"


def test_live_count_as_decided_is_patched() -> None:
    a = scale_action(request(), where=WHERE, live=2, dry_run=False)
    assert (a.outcome, a.before, a.patch) == ("patched", 2, True)


def test_someone_else_scaled_meanwhile_is_superseded() -> None:
    a = scale_action(request(), where=WHERE, live=3, dry_run=False)
    assert (a.outcome, a.before, a.patch) == ("superseded", 3, False)
    assert "has 3 replicas, not the 2 the decision saw" in a.message


def test_a_retry_after_the_patch_only_waits_and_keeps_the_decided_from() -> None:
    a = scale_action(request(), where=WHERE, live=4, dry_run=False)
    assert (a.outcome, a.before, a.patch) == ("patched", 2, False)


def test_a_person_request_has_no_from_and_patches_from_live() -> None:
    a = scale_action(request(from_replicas=None), where=WHERE, live=7, dry_run=False)
    assert (a.outcome, a.before, a.patch) == ("patched", 7, True)


def test_dry_run_never_patches() -> None:
    a = scale_action(request(), where=WHERE, live=2, dry_run=True)
    assert (a.outcome, a.before, a.patch) == ("dry_run", 2, False)
    assert a.message == "dry run: would scale serving/hpt 2 -> 4 (load)"


def test_dry_run_still_sees_a_superseded_count() -> None:
    assert scale_action(request(), where=WHERE, live=9, dry_run=True).outcome == "superseded"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("success", "available"),
        ("superseded", "superseded"),
        ("timeout", "timeout"),
        ("failed", "failed"),
        ("error", "failed"),
        (None, "failed"),
    ],
)
def test_wait_outcome(status: object, outcome: str) -> None:
    assert wait_outcome(status) == outcome
