"""Start the desktop app: window and thumbnails first, torch in the background.

``augstudio`` with no path opens the bundled ``shapes`` sample dataset (RGB photos-like images) with the
bundled example recipe; ``augstudio gui PATH [--recipe FILE]`` opens a folder.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from augstudio.core.base.errors import DatasetError, RecipeError
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
        QTimer.singleShot(30, win.ensure_preview)  # imports pyqtgraph after the first paint
        if load_torch:
            QTimer.singleShot(50, win.ctx.load_torch)

    QTimer.singleShot(0, start)
    return win


def run_app(path=None, recipe_path=None) -> int:
    """Run the app until its window closes. A folder or recipe that does not exist is refused before any
    window opens (DatasetError / RecipeError: the CLI prints them and exits with code 2). Errors the
    user is shown go to the log with their traceback (stderr, unless logging is set up already)."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise DatasetError(f"{p}: folder not found; give the dataset folder to open")
        if not p.is_dir():
            raise DatasetError(f"{p}: is a file, not a folder; open the folder that holds the images")
    if recipe_path is not None and not Path(recipe_path).is_file():
        raise RecipeError(f"{recipe_path}: recipe file not found (expected a .yaml or .json file)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = get_app()
    win = create_window(path, recipe_path)
    code = app.exec()
    del win
    return int(code)
