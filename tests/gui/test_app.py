"""The entry point the CLI calls: run_app(path, recipe) opens the folder and the recipe, loads torch in
the background, and returns 0 when the window is closed."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from augstudio.core.engine.recipe import load_recipe
from augstudio.gui.shell.app import run_app
from augstudio.gui.shell.main_window import MainWindow, default_recipe_for


def test_run_app_opens_folder_and_recipe_and_exits_cleanly(qapp, photo_folder, tmp_path):
    rec = tmp_path / "mine.yaml"
    load_recipe({"seed": 9, "steps": [{"op": "vflip"}, {"op": "rotate", "degrees": 5}]}).save(rec)
    seen = {}

    def poll():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        win = wins[-1] if wins else None
        if win is not None and win.ctx.is_torch_ready() and win.preview is not None and win.preview.renders:
            seen["title"] = win.windowTitle()
            seen["recipe"] = win.ctx.recipe()
            seen["rows"] = win.browser.model.rowCount()
            seen["engine"] = win.engine_label.text()
            win.close()
        else:
            QTimer.singleShot(50, poll)

    QTimer.singleShot(50, poll)
    assert run_app(str(photo_folder), str(rec)) == 0
    assert seen["rows"] == 4
    assert seen["title"].startswith("photos — mine.yaml")
    assert seen["recipe"] == load_recipe(rec)
    assert seen["engine"].startswith("augmentation ready")


def test_bundled_samples_open_with_their_example_recipe(samples_root):
    assert default_recipe_for(samples_root / "shapes").name == "sample.yaml"
    assert default_recipe_for(samples_root / "wafers").name == "wafer.yaml"
    assert default_recipe_for(samples_root.parent) is None


def test_missing_folder_or_recipe_is_refused_before_a_window_opens(tmp_path, photo_folder):
    import pytest

    from augstudio.cli import main
    from augstudio.core.base.errors import DatasetError, RecipeError

    with pytest.raises(DatasetError, match="folder not found"):
        run_app(str(tmp_path / "nope"))
    f = photo_folder / "cat" / "cat_0.jpg"
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        run_app(str(f))
    with pytest.raises(RecipeError, match="recipe file not found"):
        run_app(str(photo_folder), str(tmp_path / "missing.yaml"))
    assert main(["gui", str(tmp_path / "nope")]) == 2
