"""Automatic garbage collection paused while a page is built.

A fleet page for 500 models builds some 20,000 dicts and lists that live for the request
and are freed by reference counting when it ends (they hold no cycles). With collection
on, the collections that run while they are alive move them to the oldest generation,
and every few requests that triggers a full collection, which walks every object of the
process: 160 ms each in ``bench/bench_fleet.py``'s process, more in Airflow's API server,
whose heap is much larger. It made the page's p95 twice its median.

While collection is paused nothing is promoted; when the request ends its objects are
freed as usual and the generations' counts go back down, so the pause does not move the
cost elsewhere. The pause is process-wide (``gc`` has no per-thread switch): it is
counted, so that overlapping requests in the server's thread pool re-enable collection
only when the last one ends, and it never re-enables a collector that was already off.

>>> import gc
>>> with collection_paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collection_paused() -> Iterator[None]:
    """Automatic collection off for the ``with`` block (and any block overlapping it)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
