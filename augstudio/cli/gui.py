"""augstudio [gui] [PATH]: open the desktop app (on the bundled sample dataset when no PATH is given)."""

from __future__ import annotations

from augstudio.core.base.errors import AugstudioError

ORDER = 0


def add_parser(sub) -> str:
    p = sub.add_parser("gui", help="open the desktop app (default)")
    p.add_argument("path", nargs="?", help="dataset folder to open (default: the bundled samples)")
    p.add_argument("--recipe", "-r", help="recipe file to open")
    return "gui"


def run(args) -> int:
    try:
        from augstudio.gui.shell.app import run_app  # deferred: Qt
    except ImportError as e:
        raise AugstudioError(f"the desktop app cannot start: {e}. Install PySide6-Essentials and pyqtgraph "
                             "(pip install -e .)") from None
    return run_app(args.path, args.recipe, exit_process=True)
