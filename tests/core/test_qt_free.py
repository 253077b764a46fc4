"""The core and the CLI import with Qt blocked: a sys.meta_path finder in a fresh interpreter refuses
PySide6 / shiboken6 / pyqtgraph (and the other Qt bindings), then every module under augstudio/core and
augstudio/cli is imported, the op registry is filled and the CLI parser is built."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(r"""
    import importlib, importlib.abc, json, pkgutil, sys

    BLOCKED = ("PySide6", "PySide2", "shiboken6", "shiboken2", "PyQt5", "PyQt6", "pyqtgraph", "qtpy")

    class BlockQt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"Qt is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockQt())
    report = {"imported": [], "failed": {}}

    def attempt(name):
        try:
            importlib.import_module(name)
            report["imported"].append(name)
        except Exception as e:
            report["failed"][name] = f"{type(e).__name__}: {e}"

    attempt("augstudio")
    import augstudio.core as core
    attempt("augstudio.core")
    for info in pkgutil.walk_packages(core.__path__, "augstudio.core."):
        attempt(info.name)
    import augstudio.cli as cli
    for info in pkgutil.iter_modules(cli.__path__, "augstudio.cli."):
        attempt(info.name)
    from augstudio.core.ops import all_ops, load_all
    load_all()
    report["ops"] = len(all_ops())
    from augstudio.cli import build_parser
    _parser, runners = build_parser()
    report["commands"] = sorted(runners)
    # what the core and the CLI loaded, before this script itself tries the app's window below
    report["qt_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    report["gui_loaded"] = sorted(m for m in sys.modules if m.startswith("augstudio.gui."))
    try:
        importlib.import_module("augstudio.gui.shell.main_window")
        report["gui_blocked"] = False
    except ImportError:
        report["gui_blocked"] = True
    report["qt_after_gui"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps(report))
""")


def test_core_and_cli_import_with_qt_blocked():
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, report["failed"]
    names = set(report["imported"])
    for must in ("augstudio", "augstudio.core", "augstudio.core.io.images", "augstudio.core.io.dataset",
                 "augstudio.core.engine.recipe", "augstudio.core.workflows.export", "augstudio.core.base.jobs", "augstudio.core.ops.base",
                 "augstudio.cli.export", "augstudio.cli.gui"):
        assert must in names
    assert len(names) > 20, "the walk found the modules"
    assert report["ops"] > 10 and "export" in report["commands"] and "gui" in report["commands"]
    assert report["qt_loaded"] == [] and report["gui_loaded"] == []
    assert report["gui_blocked"] and report["qt_after_gui"] == []  # the app needs Qt, and never half-loads it
    assert report["gui_blocked"] is True, "the blocker works: the GUI itself cannot import without Qt"
