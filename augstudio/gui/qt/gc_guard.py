"""Python's cycle collector runs on the GUI thread only, while other threads may run Python.

CPython collects reference cycles in whichever thread happens to allocate. A cycle that holds a Qt object,
collected on a pool thread, deletes that object there; its destructor takes a Qt lock and then waits for
the GIL, which the GUI thread holds while it waits for the same lock (deleting a menu, emitting an undo
stack's signal): both threads stop for good. Seen in the GUI tests: a preview job reading COCO annotations
against the window's teardown, and a pool task's last lines against a chain edit.

So automatic collection is off whenever a thread other than the GUI thread may run Python. Such a thread or
pool task takes a hold (``hold()``) on the GUI thread *before* it starts and lets go (``release()``) as the
last thing it does; meanwhile a timer on the GUI thread (``install()``) collects by the same generation
thresholds the collector would use. Automatic collection comes back on the GUI thread only: at the timer's
next tick once no hold is left, or at a release made there. (Turned back on by the worker itself, the
worker's next allocation could start a collection on the worker: the second hang above.) Without an
application there is no GUI collector and no Qt object to collect, and the last release turns it back on
wherever it is made.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QCoreApplication, QTimer

INTERVAL_MS = 100
_lock = threading.Lock()
_state: dict = {"holds": 0, "off": False, "was_enabled": True, "timer": None}


def install() -> None:
    """Start the GUI-thread collector (once per application; call on the GUI thread)."""
    app = QCoreApplication.instance()
    timer = _state["timer"]
    try:
        alive = timer is not None and timer.parent() is app
    except RuntimeError:  # its application was deleted (tests make new ones)
        alive = False
    if alive or app is None:
        return
    timer = QTimer(app)
    timer.setInterval(INTERVAL_MS)
    timer.timeout.connect(collect_due)
    timer.start()
    _state["timer"] = timer


def hold() -> None:
    """Automatic collection off until the matching ``release()`` (call it before starting the thread)."""
    with _lock:
        if not _state["off"]:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
            _state["off"] = True
        _state["holds"] += 1


def release() -> None:
    """The end of a ``hold()``: the last one turns automatic collection back on if made on the GUI thread
    (or where no GUI collector was ever installed); otherwise the GUI thread's timer does it at its next
    tick."""
    on_gui = threading.current_thread() is threading.main_thread()
    with _lock:
        _state["holds"] = max(0, _state["holds"] - 1)
        if _state["holds"] == 0 and (on_gui or _state["timer"] is None):  # no Qt call off the GUI thread
            _restore()


def _restore() -> None:  # under _lock, with no hold left
    if _state["off"]:
        _state["off"] = False
        if _state["was_enabled"]:
            gc.enable()


def collect_due() -> int:
    """On the GUI thread: the collection the automatic collector would make now (none while it is on), and
    automatic collection back on once no hold is left."""
    with _lock:
        if _state["holds"] == 0:
            _restore()
    if gc.isenabled():
        return -1
    (t0, t1, t2), (c0, c1, c2) = gc.get_threshold(), gc.get_count()
    if c0 < t0:
        return -1
    gen = 0
    if c1 + 1 > t1:
        gen = 2 if c2 + 1 > t2 else 1
    gc.collect(gen)
    return gen


__all__ = ["install", "hold", "release", "collect_due", "INTERVAL_MS"]
