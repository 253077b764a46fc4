"""PySide6 6.12.0 drops a reference to True on every Python-side signal emit; on Python < 3.12 a long
session then aborts the interpreter. The requirements exclude that release; augstudio.gui still guards an
environment that has it. The decision is a pure function; the guard is checked in a process that reports
6.12.0, and the installed PySide6 must survive many emits."""

from __future__ import annotations

import subprocess
import sys

from augstudio.gui import needs_emit_guard


def test_the_guard_applies_only_to_the_broken_release_on_mortal_bools():
    assert needs_emit_guard("6.12.0", (3, 11))
    assert not needs_emit_guard("6.11.3", (3, 11)) and not needs_emit_guard("6.12.1", (3, 11))
    assert not needs_emit_guard("6.12.0", (3, 12))  # immortal True / False
    assert not needs_emit_guard("6.12.0", (3, 11), immortal_bools=True)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_in_a_process_reporting_6_12_0_true_can_no_longer_be_freed():
    code = """
import sys, PySide6
PySide6.__version__ = "6.12.0"
before = sys.getrefcount(True)
import augstudio.gui
print(augstudio.gui.EMIT_GUARD, sys.getrefcount(True) - before > 2 ** 39)
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr[-800:]
    want = "True True" if sys.version_info < (3, 12) else "False False"
    assert out.stdout.split() == want.split()


def test_many_signal_emits_do_not_abort_the_interpreter():
    code = """
import augstudio.gui
from PySide6.QtCore import QCoreApplication, QObject, Signal
app = QCoreApplication([])
class B(QObject):
    s = Signal(object)
b = B()
got = []
b.s.connect(got.append)
for i in range(20000):
    b.s.emit(i)
x = b.s.emit(-1)
print("OK", len(got), x)
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr[-800:]
    assert "OK 20001 True" in out.stdout
