"""Stopping a process group: what a test or bench started with ``start_new_session=True``.

Standard library only: ``bench/newcomer.py`` runs it with the system's python.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def stop_group(pgid: int, timeout: float = 60, *, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the group ``pgid``, wait until none of it is left, SIGKILL what outlives ``timeout``.

    Returns once the group is gone (or, after SIGKILL, after a few more seconds). ``leader``
    is the group's leader when it is this process's child: it is reaped while waiting. An
    unreaped child stays in its group as a zombie, so without that the group never looks
    gone and every stop would wait out the timeout and end in SIGKILL.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _gone(pgid, timeout, leader):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _gone(pgid, _AFTER_KILL_S, leader)


_AFTER_KILL_S = 5.0


def _gone(pgid: int, timeout: float, leader: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if leader is not None:
            leader.poll()
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    """Whether any process (a zombie included) is left in the group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
