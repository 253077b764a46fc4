"""Start the desktop app: window and thumbnails first, torch in the background.

``augstudio`` with no path opens the bundled ``shapes`` sample dataset (RGB photos-like images) with the
bundled example recipe; ``augstudio gui PATH [--recipe FILE]`` opens a folder.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from augstudio.core.base.errors import AugstudioError, DatasetError, RecipeError
from augstudio.core.io.samples import samples_dir
from augstudio.gui.shell.main_window import MainWindow

STYLE = """
QMainWindow, QDockWidget { background: #232428; }
QDockWidget::title { background: #2b2d31; padding: 5px 8px; color: #c8ccd4; font-weight: 600; }
QLabel#caption, QLabel#editorTitle { color: #e3e5e8; font-weight: 600; }
QLabel#dim { color: #8a8f98; }
QLabel#error { color: #ff7b72; }
QLabel#browserHeader { color: #e3e5e8; padding: 2px 2px 4px 2px; }
QLabel#previewMessage { color: #9aa0aa; font-size: 13px; padding: 20px; }
QLabel#statusItem { color: #aeb3bb; padding: 0 8px; border-left: 1px solid #3a3c42; }
QListView#thumbGrid { background: #1e1f22; border: none; }
QListView#thumbGrid::item { color: #aeb3bb; border-radius: 4px; padding: 2px; }
QListView#thumbGrid::item:selected { background: #3d5a80; color: white; }
QListWidget#classSidebar { background: #26282c; border: none; padding: 2px; }
QListWidget#classSidebar::item { padding: 4px 6px; border-radius: 3px; }
QListWidget#classSidebar::item:selected { background: #3d5a80; color: white; }
QListView#stepList, QTreeWidget#opPalette, QTreeWidget#appliedParams { background: #1e1f22; border: 1px solid #33353b; }
QListView#stepList::item { padding: 4px; }
QFrame#jobRow { background: #2b2d31; border: 1px solid #3a3c42; border-radius: 5px; }
QProgressBar { border: 1px solid #3a3c42; border-radius: 3px; background: #1e1f22; text-align: center; height: 16px; }
QProgressBar::chunk { background: #4a7bb7; border-radius: 2px; }
QTabWidget::pane { border: none; }
QTabBar::tab { background: #2b2d31; color: #aeb3bb; border: none; padding: 6px 16px; margin-right: 2px;
               border-top-left-radius: 4px; border-top-right-radius: 4px; }
QTabBar::tab:selected { background: #3a3d44; color: #ffffff; }
QTabBar::tab:hover:!selected { background: #33363c; }
QPushButton, QToolButton { background: #34373d; border: 1px solid #45484f; border-radius: 4px; padding: 4px 10px;
                           color: #dcdfe4; }
QPushButton:hover, QToolButton:hover { background: #3d4148; }
QPushButton:pressed, QToolButton:pressed, QToolButton:checked { background: #3d5a80; border-color: #4a7bb7; }
QPushButton:disabled, QToolButton:disabled { color: #6e7076; background: #2b2d31; }
QMenuBar { background: #232428; }
QMenuBar::item:selected { background: #3a3d44; }
QStatusBar { background: #1b1c1f; color: #aeb3bb; }
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    base, alt, text = QColor(30, 31, 34), QColor(43, 45, 49), QColor(220, 223, 228)
    for role, c in ((QPalette.ColorRole.Window, QColor(35, 36, 40)), (QPalette.ColorRole.WindowText, text),
                    (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, alt),
                    (QPalette.ColorRole.ToolTipBase, alt), (QPalette.ColorRole.ToolTipText, text),
                    (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, QColor(50, 52, 57)),
                    (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.Highlight, QColor(61, 90, 128)),
                    (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
                    (QPalette.ColorRole.PlaceholderText, QColor(120, 124, 130)),
                    (QPalette.ColorRole.Link, QColor(110, 160, 230))):
        pal.setColor(role, c)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(110, 112, 118))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 112, 118))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(110, 112, 118))
    app.setPalette(pal)
    app.setStyleSheet(STYLE)


def get_app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("augstudio")
        app.setOrganizationName("augstudio")
    return app


def create_window(path=None, recipe_path=None, load_torch: bool = True):
    """Build (and show) the main window; the dataset opens on the next event-loop turn and torch loads
    in the background right after the first paint."""
    app = get_app()
    apply_theme(app)
    win = MainWindow(lazy_preview=True)
    if path is None:
        path = samples_dir() / "shapes"
    win.show()

    def start():
        win.open_folder(Path(path))
        if recipe_path:
            win.open_recipe(recipe_path)
        QTimer.singleShot(30, win, win.ensure_preview)  # imports pyqtgraph after the first paint
        if load_torch:
            QTimer.singleShot(50, win.ctx, win.ctx.load_torch)

    QTimer.singleShot(0, win, start)  # timers with the window as context: none runs after it is gone
    return win


# Qt's messages that say nothing to a user (the offscreen platform's, a window manager's quirks)
_QUIET = ("propagateSizeHints", "QXcbConnection: XCB error", "qt.qpa.wayland")
_qt_log = logging.getLogger("qt")


def _qt_message(mode, _context, message: str) -> None:
    if any(q in message for q in _QUIET):
        _qt_log.debug("%s", message)
    elif mode in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        _qt_log.error("%s", message)
    elif mode == QtMsgType.QtWarningMsg:
        _qt_log.warning("%s", message)
    else:
        _qt_log.debug("%s", message)


XCB_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-xinerama0 "
                "libxcb-render-util0 libxcb-image0 libxcb-shape0 libxcb-randr0")


def display_problem(platform: str | None = None, display: str | None = None) -> str | None:
    """Why Qt's X11 (xcb) platform plugin would abort on this machine, or None. Qt 6 needs
    ``libxcb-cursor.so.0`` and a few other X libraries that a minimal Debian / Ubuntu desktop may lack;
    without them Qt prints "could not load the Qt platform plugin xcb" and aborts the process, so this is
    checked first and said in words (with the packages to install)."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "") if platform is None else platform
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, … chosen explicitly
    display = os.environ.get("DISPLAY", "") if display is None else display
    if not display:
        if os.environ.get("WAYLAND_DISPLAY"):
            return None  # Qt picks its Wayland plugin
        return ("no display: $DISPLAY is not set. Run augstudio on a desktop session (or over ssh -X), or "
                "set QT_QPA_PLATFORM=offscreen for a headless run")
    missing = [lib for lib in ("xcb-cursor", "xkbcommon-x11", "xcb-icccm", "xcb-keysyms")
               if ctypes.util.find_library(lib) is None]
    if not missing:
        return None
    return (f"the Qt X11 platform plugin needs libraries that are not installed ({', '.join('lib' + m for m in missing)}). "
            f"On Debian / Ubuntu: sudo apt-get install {XCB_PACKAGES}")


def finish(code: int, ctx=None) -> None:
    """End the process now that the window has closed: the settings are saved and every job was cancelled;
    a job still inside one long step (a style iteration, seconds of torch work) is not waited for, and
    neither is the interpreter's slow teardown of torch and Qt. Export worker processes end by themselves
    soon after this process is gone (``core.workflows.pool.watch_parent``), every written file is complete
    (atomic writes), and multiprocessing's resource tracker removes the pool's semaphores (quietly: see
    ``run_app``)."""
    if ctx is not None:
        ctx.pool.waitForDone(50)
    if "multiprocessing" in sys.modules:  # an export's worker processes: their export was cancelled
        for p in sys.modules["multiprocessing"].active_children():
            p.terminate()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_app(path=None, recipe_path=None, exit_process: bool = False) -> int:
    """Run the app until its window closes. A folder or recipe that does not exist is refused before any
    window opens (DatasetError / RecipeError: the CLI prints them and exits with code 2). Errors the
    user is shown go to the log with their traceback (stderr, unless logging is set up already).
    ``exit_process`` (the CLI): end the process at once when the window has closed (``finish``)."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise DatasetError(f"{p}: folder not found; give the dataset folder to open")
        if not p.is_dir():
            raise DatasetError(f"{p}: is a file, not a folder; open the folder that holds the images")
    if recipe_path is not None and not Path(recipe_path).is_file():
        raise RecipeError(f"{recipe_path}: recipe file not found (expected a .yaml or .json file)")
    problem = display_problem()
    if problem is not None:
        raise AugstudioError(f"the desktop app cannot start: {problem}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if exit_process:
        # after a quick exit (finish) with an export's worker pool still starting, multiprocessing's
        # resource tracker removes the pool's semaphores, as it should, and would also print a warning
        # about them on the terminal; it takes its warning filters from ours when it starts
        sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    qInstallMessageHandler(_qt_message)
    app = get_app()
    win = create_window(path, recipe_path)
    if exit_process:
        # at once when the window has closed, not after the events still queued (a job's progress, …)
        ctx = win.ctx
        app.lastWindowClosed.connect(lambda: finish(0, ctx))
    code = int(app.exec())
    if exit_process:
        finish(code, win.ctx)
    del win
    return code
