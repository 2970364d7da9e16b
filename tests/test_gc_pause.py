"""mlinfra.gc_pause: the pause is counted across threads and never turns on a collector that was off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from mlinfra.gc_pause import collection_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_overlapping_pauses_reenable_only_when_the_last_ends() -> None:
    gc.enable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with collection_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collection_paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert seen == {"after the first ended": False}
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_the_collector_comes_back_when_the_block_raises() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("page failed")
    assert gc.isenabled()


def test_a_page_built_while_paused_leaves_nothing_for_the_collector() -> None:
    """What the pause relies on: a view's objects are freed by reference counting alone."""
    gc.enable()
    gc.collect()
    before = gc.get_count()[0]
    with collection_paused():
        view = [{"model": f"m{i}", "labels": {"a": str(i)}, "points": [i, i + 1]} for i in range(5000)]
        peak = gc.get_count()[0]
        del view
    # 15,000 containers were counted, and freeing them took the count back down: a
    # collection after the pause has (almost) nothing of the view's to walk or promote.
    assert peak >= before + 15_000
    assert gc.get_count()[0] < before + 1_000
