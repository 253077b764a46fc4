"""PySide6 6.12.0 drops a reference to True on every Python-side signal emit; on Python < 3.12 a
long session then aborts the interpreter. augstudio.gui guards against it: many emits must survive."""

from __future__ import annotations

import subprocess
import sys


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-800:]
    assert "OK 20001 True" in out.stdout
