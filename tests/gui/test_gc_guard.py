"""The cycle collector stays off every thread but the GUI thread while they run Python (gc_guard's reason: a Qt
object collected on a pool thread deadlocked against the GUI thread: a window's teardown, an undo stack's signal)."""

import gc
import threading
import weakref

import pytest

from augstudio.gui.qt import gc_guard


class _Node:
    pass


@pytest.fixture
def quiet(qapp, qtbot):
    """No hold left by another test's threads (the app's torch loader may still be loading) and automatic
    collection back on: the state these tests start from."""
    gc_guard.install()
    qtbot.waitUntil(lambda: gc_guard._state["holds"] == 0 and gc.isenabled(), timeout=60000)


def _cycle():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_workers_switch_automatic_collection_off_until_the_last_one_ends(quiet, qtbot):
    inside = threading.Event()
    leave = threading.Event()
    seen = []

    def work():
        gc_guard.hold()
        try:
            inside.set()
            leave.wait(5)
        finally:
            gc_guard.release()
        seen.append(("after its release, on the worker", gc.isenabled()))

    t = threading.Thread(target=work)
    t.start()
    assert inside.wait(5)
    gc_guard.hold()  # a second one at the same time, on this (GUI) thread
    seen.append(("both", gc.isenabled()))
    gc_guard.release()
    seen.append(("the first one still runs", gc.isenabled()))
    leave.set()
    t.join(5)
    # the last release was on the worker: collection stays off there (its next allocation could collect a
    # Qt object on it), and the GUI thread's timer turns it back on
    assert seen == [("both", False), ("the first one still runs", False), ("after its release, on the worker", False)]
    qtbot.waitUntil(gc.isenabled, timeout=2000)


def test_a_release_on_the_gui_thread_or_without_a_gui_collector_restores_at_once(quiet, monkeypatch):
    gc_guard.hold()
    assert not gc.isenabled()
    gc_guard.release()  # on the GUI thread
    assert gc.isenabled()
    monkeypatch.setitem(gc_guard._state, "timer", None)  # no application collector: nothing else would
    done = []
    gc_guard.hold()
    t = threading.Thread(target=lambda: (gc_guard.release(), done.append(gc.isenabled())))
    t.start()
    t.join(5)
    assert done == [True]


def test_a_pool_task_holds_from_before_it_starts_until_after_its_last_line(quiet, qtbot):
    """The hold is taken on the GUI thread when the task is made, so the pool thread never runs Python with
    automatic collection on (a collection there deadlocked a GUI test against an undo stack's signal)."""
    from PySide6.QtCore import QThreadPool

    from augstudio.gui.qt.workers import JobHandle, JobRunnable

    seen = []

    def job(token):
        seen.append(gc.isenabled())
        return 1

    handle = JobHandle("gc test")
    runnable = JobRunnable(job, handle)
    assert not gc.isenabled()  # before the pool has it
    with qtbot.waitSignal(handle.ended, timeout=5000):
        QThreadPool.globalInstance().start(runnable)
    assert seen == [False] and handle.result == 1
    qtbot.waitUntil(gc.isenabled, timeout=2000)  # the GUI thread's timer turned it back on


def test_the_gui_thread_collects_cycles_while_workers_run(quiet, qtbot):
    gc_guard.install()
    gc_guard.install()  # once per application
    assert gc_guard._state["timer"].isActive()
    thresholds = gc.get_threshold()
    gc.set_threshold(100, *thresholds[1:])  # other threads' frees lower the count: stay well past it
    try:
        gc_guard.hold()
        try:
            ref = _cycle()
            kept = [_Node() for _ in range(2000)]  # live allocations past the first threshold
            assert ref() is not None  # nothing collected it: automatic collection is off
            qtbot.waitUntil(lambda: ref() is None, timeout=5000)  # the timer on this (GUI) thread did
            assert len(kept) == 2000
        finally:
            gc_guard.release()  # on this (GUI) thread: automatic collection back at once
    finally:
        gc.set_threshold(*thresholds)
    assert gc.isenabled()


def test_the_torch_loader_is_the_only_thread_that_compiles_the_loops(quiet, qtbot, monkeypatch):
    """numba's compiler runs Python for seconds on an empty cache: it must run on the torch loader, which
    holds the guard, and on no thread that ``jit.load`` would start for a pool task (which would not)."""
    from augstudio.core.kernels import jit
    from augstudio.gui.qt.context import AppContext

    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(jit, "_BACKGROUND", {})
    ctx = AppContext(max_threads=1)
    started = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self.name) or real_start(self))
    asked = threading.Event()  # the loader waits for the pool task's request before it loads: the race, fixed
    load_all_now = jit.load_all_now
    monkeypatch.setattr(jit, "load_all_now", lambda: asked.wait(30) and load_all_now())
    with qtbot.waitSignal(ctx.torch_ready, timeout=60000):
        ctx.load_torch()
    t = threading.Thread(target=lambda: jit.load("color_jit") or asked.set(), name="a pool task")
    t.start()  # a preview asking for the loops right after torch_ready
    t.join(30)
    ctx._torch_thread.join(120)
    assert jit._BACKGROUND["thread"] is ctx._torch_thread and jit._BACKGROUND.get("started")
    assert "augstudio-compiled-loops" not in started, started
    assert jit.load("color_jit") is not None
    ctx.shutdown()
