"""Automatic garbage collection paused while a burst of short-lived objects is made.

Both users build many small containers that live for one request or one evaluation and
hold no reference cycles, so reference counting frees them all; the collections their
allocation triggers only walk (and promote) them and every long-lived object:

* the local PromQL engine (:mod:`mlinfra.promql.engine`) allocates a tuple or list per
  sample: at 100k series, collections were 40% of an evaluation and made its cost grow
  faster than the series count;
* the fleet page (:mod:`mlinfra.ui.app`) builds some 20,000 dicts and lists for 500
  models: collections during the request moved them to the oldest generation, and every
  few requests that set off a full collection of the whole process (160 ms each in
  ``bench/bench_fleet.py``'s process, more in Airflow's API server with its larger heap):
  the page's p95 was twice its median.

While collection is paused nothing is promoted; when the block ends its objects are freed
as usual and the generations' counts go back down, so the pause does not move the cost
elsewhere. The pause is process-wide (``gc`` has no per-thread switch): it is counted, so
that overlapping blocks (the API server's thread pool, an engine inside a page) re-enable
collection only when the last one ends, and it never re-enables a collector that was off.

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
