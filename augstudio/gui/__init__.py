"""The desktop app (Qt: PySide6-Essentials + pyqtgraph). Nothing outside augstudio/gui imports this."""

from __future__ import annotations

import ctypes
import sys


def _guard_pyside_emit_refcount() -> bool:
    """PySide6 6.12.0 returns ``True`` from ``SignalInstance.emit()`` without taking a reference, so every
    emit from Python (ours, pyqtgraph's, pytest-qt's) drops one reference to ``True``; on Python < 3.12,
    where ``True`` is not immortal, the interpreter aborts after a few thousand emits ("bool_dealloc:
    deallocating True or False"). Until that release is excluded, give ``True`` and ``False`` a reference
    count that cannot reach zero (what Python 3.12 does for them anyway). Returns whether it applied."""
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # immortal bools / debug build
        return False
    try:
        import PySide6  # deferred: Qt, only to read its version (the core-only tests block it)
    except ImportError:
        return False
    if PySide6.__version__ != "6.12.0":
        return False
    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True


EMIT_GUARD = _guard_pyside_emit_refcount()
