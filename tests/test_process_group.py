"""tests/support/process_group.stop_group: the group stopped, its leader reaped, SIGKILL only for what ignores SIGTERM."""

from __future__ import annotations

import signal
import subprocess

from tests.support.process_group import group_alive, stop_group


def test_a_group_whose_leader_is_our_child_stops_on_sigterm_and_the_leader_is_reaped() -> None:
    # The leader and a grandchild: the group is gone only when both are, and the leader (our
    # child) only leaves its group once reaped.
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    stop_group(leader.pid, timeout=60, leader=leader)
    assert leader.returncode == -signal.SIGTERM
    assert not group_alive(leader.pid)


def test_what_ignores_sigterm_is_killed_after_the_timeout() -> None:
    # An ignored signal stays ignored across exec: sleep inherits it. Stopped only once the
    # trap is in place (a SIGTERM before it would end the shell as usual).
    leader = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec sleep 300"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert leader.stdout is not None
    assert leader.stdout.readline() == b"ready\n"
    stop_group(leader.pid, timeout=1, leader=leader)
    assert leader.returncode == -signal.SIGKILL
    assert not group_alive(leader.pid)
    leader.stdout.close()


def test_a_group_that_is_gone_already_is_left_alone() -> None:
    leader = subprocess.Popen(["true"], start_new_session=True)
    leader.wait()
    stop_group(leader.pid, timeout=60, leader=leader)  # no process, no signal, no error
    assert leader.returncode == 0
