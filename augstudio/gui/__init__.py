"""The desktop app (Qt: PySide6-Essentials + pyqtgraph). Nothing outside augstudio/gui imports this."""

from __future__ import annotations

import ctypes
import sys


def needs_emit_guard(pyside_version: str, python: tuple = sys.version_info[:2], immortal_bools: bool = False) -> bool:
    """PySide6 6.12.0 returns ``True`` from ``SignalInstance.emit()`` without taking a reference, so every
    emit from Python (ours, pyqtgraph's, pytest-qt's) drops one reference to ``True``; on Python < 3.12,
    where ``True`` is not immortal, the interpreter aborts after a few thousand emits ("bool_dealloc:
    deallocating True or False"). The requirements exclude 6.12.0; an environment that has it anyway (pip
    --no-deps, a distribution's package) gets the guard."""
    return pyside_version == "6.12.0" and tuple(python) < (3, 12) and not immortal_bools


def _guard_pyside_emit_refcount() -> bool:
    """Give ``True`` and ``False`` a reference count that cannot reach zero (what Python 3.12 does for them
    anyway) where ``needs_emit_guard``. Returns whether it applied."""
    try:
        import PySide6  # deferred: Qt, only to read its version (the core-only tests block it)
    except ImportError:
        return False
    if not needs_emit_guard(PySide6.__version__, immortal_bools=hasattr(sys, "gettotalrefcount")):
        return False
    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True


EMIT_GUARD = _guard_pyside_emit_refcount()
