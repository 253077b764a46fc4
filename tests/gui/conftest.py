"""GUI fixtures: a main window with settings redirected to a temp folder, torch loaded, and modal
message boxes replaced by recorders (a modal box would block an offscreen test forever)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QMessageBox

SCREEN = QRect(0, 0, 1920, 1080)  # the offscreen platform's screen is 800 x 800: tests simulate a desktop one


@pytest.fixture(autouse=True)
def _settings_dir(tmp_path, monkeypatch):
    d = tmp_path / "settings"
    monkeypatch.setenv("AUGSTUDIO_SETTINGS_DIR", str(d))
    return d


@pytest.fixture
def make_window(qtbot, monkeypatch):
    """make_window(path=None, torch=True) -> MainWindow (closed and waited for at teardown) on a simulated
    1920 x 1080 screen (``screen.rect`` changes it)."""
    from augstudio.gui.shell.app import apply_theme
    from augstudio.gui.shell.main_window import MainWindow

    made = []
    monkeypatch.setattr(MainWindow, "available_geometry", lambda self: QRect(make.screen))

    def make(path=None, torch=True):
        from PySide6.QtWidgets import QApplication

        apply_theme(QApplication.instance())
        win = MainWindow()
        win.warnings = []
        win.warn = lambda title, text: win.warnings.append(text)
        win.ask_unsaved = lambda: QMessageBox.StandardButton.Discard
        win.quit_asked = []  # the "jobs are running" prompt: recorded and answered yes
        win.ask_quit = lambda jobs: win.quit_asked.append([j.title for j in jobs]) or True
        qtbot.addWidget(win)
        win.resize(1280, 800)
        win.show()
        made.append(win)
        if path is not None:
            assert win.open_folder(path)
        if torch:
            with qtbot.waitSignal(win.ctx.torch_ready, timeout=60000):
                win.ctx.load_torch()
        return win

    make.screen = QRect(SCREEN)
    yield make
    for w in made:
        w._closing = True
        w.close()
        assert w.ctx.pool.waitForDone(5000)
