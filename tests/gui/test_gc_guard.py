"""The cycle collector stays off worker threads while they run Python (gc_guard's reason: a Qt object
collected on a pool thread deadlocked against the GUI thread's teardown)."""

import gc
import threading
import weakref

from augstudio.gui.qt import gc_guard


class _Node:
    pass


def _cycle():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_workers_switch_automatic_collection_off_until_the_last_one_ends(qapp):
    assert gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()
    seen = []

    def work():
        with gc_guard.worker():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=work)
    t.start()
    assert inside.wait(5)
    with gc_guard.worker():  # a second worker at the same time
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())  # the first one still runs
    leave.set()
    t.join(5)
    assert seen == [False, False] and gc.isenabled()


def test_the_gui_thread_collects_cycles_while_workers_run(qapp, qtbot):
    gc_guard.install()
    gc_guard.install()  # once per application
    assert gc_guard._state["timer"].isActive()
    thresholds = gc.get_threshold()
    gc.set_threshold(100, *thresholds[1:])  # other threads' frees lower the count: stay well past it
    try:
        with gc_guard.worker():
            ref = _cycle()
            kept = [_Node() for _ in range(2000)]  # live allocations past the first threshold
            assert ref() is not None  # nothing collected it: automatic collection is off
            qtbot.waitUntil(lambda: ref() is None, timeout=5000)  # the timer on this (GUI) thread did
            assert len(kept) == 2000
    finally:
        gc.set_threshold(*thresholds)
    assert gc.isenabled()
