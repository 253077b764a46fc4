"""Python's cycle collector runs on the GUI thread only, while worker threads run Python.

CPython collects reference cycles in whichever thread happens to allocate. A cycle that holds a Qt object,
collected on a pool thread, deletes that object there; its destructor takes a Qt lock and then waits for
the GIL, which the GUI thread holds while it waits for the same lock (deleting a menu): both threads stop
for good. Seen in the GUI tests: a preview job reading COCO annotations against the window's teardown.

So while any worker runs Python (``worker()``), automatic collection is off, and a timer on the GUI thread
(``install()``) collects by the same generation thresholds the collector would use. With no worker
running, the collector is back to normal.
"""

from __future__ import annotations

import contextlib
import gc
import threading

from PySide6.QtCore import QCoreApplication, QTimer

INTERVAL_MS = 100
_lock = threading.Lock()
_state: dict = {"workers": 0, "was_enabled": True, "timer": None}


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


@contextlib.contextmanager
def worker():
    """Around Python work on a thread other than the GUI thread: no automatic collection meanwhile."""
    with _lock:
        if _state["workers"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["workers"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["workers"] -= 1
            if _state["workers"] == 0 and _state["was_enabled"]:
                gc.enable()


def collect_due() -> int:
    """On the GUI thread: the collection the automatic collector would make now (none while it is on)."""
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


__all__ = ["install", "worker", "collect_due", "INTERVAL_MS"]
