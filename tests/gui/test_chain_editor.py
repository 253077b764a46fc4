"""The chain editor, driven by the actions a user takes: double-click in the palette, drag and keys in
the step list, sliders and spin boxes in the step editor; undo/redo; save / reload."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.gui.panels.chain.model import ChainModel
from augstudio.gui.panels.chain.steps import MIME


def ops(win):
    return [s.op for s in win.chain.ctrl.model.steps]


def add_by_double_click(win, qtbot, name):
    pal = win.chain.palette
    it = pal.item_for(name)
    assert it is not None, f"{name} not in the palette"
    pal.scrollToItem(it)
    rect = pal.visualItemRect(it)
    # Qt 6's QTest needs the first click of the pair to be sent as a click
    qtbot.mouseClick(pal.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(pal.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def drag_row(win, src, dst_row):
    """Drop the step at ``src`` onto the top half of row ``dst_row`` (what a mouse drag ends with)."""
    view = win.chain.steps
    md = view.model().mimeData([view.model().index(src)])
    if dst_row < view.model().rowCount():
        r = view.visualRect(view.model().index(dst_row))
        pos = QPointF(r.center().x(), r.top() + 2)
    else:
        r = view.visualRect(view.model().index(dst_row - 1))
        pos = QPointF(r.center().x(), r.bottom() - 1)
    vp = view.viewport()
    left, none = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QApplication.sendEvent(vp, QDragEnterEvent(pos.toPoint(), Qt.DropAction.MoveAction, md, left, none))
    QApplication.sendEvent(vp, QDragMoveEvent(pos.toPoint(), Qt.DropAction.MoveAction, md, left, none))
    QApplication.sendEvent(vp, QDropEvent(pos, Qt.DropAction.MoveAction, md, left, none))


def test_pure_chain_model_move_and_events():
    m = ChainModel(["a", "b", "c", "d"])
    seen = []
    m.listeners.append(lambda phase, kind, *a: seen.append((phase, kind, a)))
    m.move(0, 2)
    assert m.steps == ["b", "c", "a", "d"]
    m.move(3, 0)
    assert m.steps == ["d", "b", "c", "a"]
    assert seen[0] == ("before", "move", (0, 2)) and seen[1] == ("after", "move", (0, 2))


def test_chain_model_runs_with_qt_blocked():
    """The chain model is plain Python: insert / move / remove / a validated parameter edit, with Qt
    imports refused."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import importlib.abc, sys
        class BlockQt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"):
                    raise ImportError(name)
        sys.meta_path.insert(0, BlockQt())
        from augstudio.core.base.errors import ParamError
        from augstudio.core.ops.step import parse_step
        from augstudio.gui.panels.chain.model import ChainModel
        m = ChainModel([parse_step({"op": "hflip"})])
        m.insert(1, parse_step({"op": "rotate"}))
        m.move(1, 0)
        new = m.with_param(0, "degrees", [-5, 20])
        assert new.values["degrees"] == [-5.0, 20.0] and m.steps[0].values["degrees"] != [-5.0, 20.0]
        m.replace(0, new)
        assert m.with_param(0, "degrees", [-5, 20]) is None  # nothing changes
        try:
            m.with_param(0, "degrees", [10, 5])
            raise SystemExit("a refused value was accepted")
        except ParamError as e:
            assert "step 1" in str(e) and "degrees" in str(e)
        m.remove(1)
        print([s.op for s in m.steps], sorted(k for k in sys.modules if k.split(".")[0] == "PySide6"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['rotate'] []"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Qt 6's drag event constructors
def test_add_reorder_remove_with_undo_redo(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes")
    win.chain.ctrl.load(Recipe())
    stack = win.chain.ctrl.stack
    for name in ("hflip", "rotate", "color_jitter"):
        add_by_double_click(win, qtbot, name)
    assert ops(win) == ["hflip", "rotate", "color_jitter"]
    assert [s["op"] for s in win.ctx.recipe().to_dict()["steps"]] == ops(win)
    assert win.isWindowModified()

    # drag color_jitter to the top
    drag_row(win, 2, 0)
    assert ops(win) == ["color_jitter", "hflip", "rotate"]
    # drag it to the end
    drag_row(win, 0, 3)
    assert ops(win) == ["hflip", "rotate", "color_jitter"]
    # keyboard: select rotate, Ctrl+Up
    view = win.chain.steps
    view.setFocus()
    view.setCurrentIndex(view.model().index(1))
    qtbot.keyClick(view, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert ops(win) == ["rotate", "hflip", "color_jitter"]
    # Delete removes the current step
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert ops(win) == ["hflip", "color_jitter"]
    # disable via the check box
    model = view.model()
    model.setData(model.index(0), Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert win.chain.ctrl.model.steps[0].enabled is False

    n = stack.count()
    history = []
    for _ in range(n):
        history.append(ops(win))
        win.chain.undo_action.trigger()
    assert ops(win) == []
    for _ in range(n):
        win.chain.redo_action.trigger()
    assert ops(win) == ["hflip", "color_jitter"] and win.chain.ctrl.model.steps[0].enabled is False
    # keyboard shortcuts reach the window
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.chain.ctrl.model.steps[0].enabled is True
    assert history[1] == ["hflip", "color_jitter"]


def test_drop_of_foreign_data_is_ignored(make_window, samples_root):
    win = make_window(samples_root / "shapes")
    before = ops(win)
    md = QMimeData()
    md.setText("not a step")
    assert not win.chain.steps_model.dropMimeData(md, Qt.DropAction.MoveAction, 0, 0, win.chain.steps.rootIndex())
    md2 = QMimeData()
    md2.setData(MIME, json.dumps([0, 1]).encode())
    assert not win.chain.steps_model.dropMimeData(md2, Qt.DropAction.MoveAction, 3, 0, win.chain.steps.rootIndex())
    assert ops(win) == before


def test_slider_drag_is_one_undo_step_and_validates(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes")
    ctrl = win.chain.ctrl
    ctrl.load(load_recipe({"steps": [{"op": "rotate", "degrees": [-10, 10]}]}))
    win.chain.steps.setCurrentIndex(win.chain.steps_model.index(0))
    field = win.chain.editor.fields["degrees"]
    high = field.parts[1].slider
    n0 = ctrl.stack.count()
    high.setSliderDown(True)  # the user grabs the handle ...
    for v in range(high.value(), high.value() + 40, 4):  # ... and drags it
        high.setValue(v)
    high.setSliderDown(False)
    assert ctrl.stack.count() == n0 + 1
    new_high = ctrl.model.steps[0].values["degrees"][1]
    assert new_high > 10
    # the low handle cannot pass the high one: it pushes it
    low_spin = field.parts[0].spin
    low_spin.setValue(new_high + 30)
    lo, hi = ctrl.model.steps[0].values["degrees"]
    assert lo == hi == pytest.approx(new_high + 30)
    assert ctrl.stack.count() == n0 + 2
    ctrl.stack.undo()
    assert ctrl.model.steps[0].values["degrees"][1] == pytest.approx(new_high)
    # the editor shows the undone value
    assert field.parts[1].spin.value() == pytest.approx(new_high)
    ctrl.stack.undo()
    assert ctrl.model.steps[0].values["degrees"] == [-10.0, 10.0]
    assert field.parts[1].spin.value() == pytest.approx(10)


def test_choice_and_p_editors_and_refused_values(make_window, samples_root):
    win = make_window(samples_root / "shapes")
    ctrl = win.chain.ctrl
    ctrl.load(load_recipe({"steps": [{"op": "rotate"}]}))
    win.chain.steps.setCurrentIndex(win.chain.steps_model.index(0))
    ed = win.chain.editor
    combo = ed.fields["interpolation"].parts[0]
    combo.setCurrentIndex(combo.findText("nearest"))
    assert ctrl.model.steps[0].values["interpolation"] == "nearest"
    ed.p_field.spin.setValue(0.25)
    assert ctrl.model.steps[0].p == pytest.approx(0.25)
    fill = ed.fields["fill"].parts[0]
    fill.setText("300")
    fill.editingFinished.emit()
    assert "0 .. 255" in ed.error.text() and not ed.error.isHidden()
    assert ctrl.model.steps[0].values["fill"] == 0


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_reload_recipe(make_window, qtbot, samples_root, tmp_path, suffix):
    win = make_window(samples_root / "shapes")
    ctrl = win.chain.ctrl
    ctrl.load(load_recipe({"seed": 7, "steps": [{"op": "hflip", "p": 0.5}]}))
    add_by_double_click(win, qtbot, "rotate")
    win.chain.editor.fields["degrees"].parts[1].spin.setValue(33)
    assert win.isWindowModified()
    path = tmp_path / f"r{suffix}"
    assert win.save_recipe(path=path)
    assert not win.isWindowModified() and path.name in win.windowTitle()
    saved = load_recipe(path)
    assert saved == win.ctx.recipe()
    assert saved.seed == 7 and saved.steps[1].values["degrees"] == [-15.0, 33.0]
    # reopen in a fresh window: the same recipe
    win2 = make_window(samples_root / "shapes")
    assert win2.open_recipe(path)
    assert win2.ctx.recipe() == saved
    assert str(path.resolve()) in win2.settings.recent_recipes()


def test_close_prompts_on_unsaved_changes(make_window, qtbot, samples_root):
    from PySide6.QtWidgets import QMessageBox

    win = make_window(samples_root / "shapes")
    add_by_double_click(win, qtbot, "vflip")
    asked = []
    win.ask_unsaved = lambda: asked.append(1) or QMessageBox.StandardButton.Cancel
    win.close()
    assert asked and win.isVisible()
    win.ask_unsaved = lambda: QMessageBox.StandardButton.Discard
    win.close()
    assert not win.isVisible()


def test_drop_a_folder_on_the_window_opens_it(make_window, qtbot, photo_folder):
    from PySide6.QtCore import QUrl

    win = make_window(None, torch=False)
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(photo_folder))])
    ev = QDropEvent(QPointF(QPoint(50, 50)), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    win.dropEvent(ev)
    assert win.ctx.dataset().root == photo_folder
    assert str(photo_folder) in win.settings.recent_folders()


def test_every_registered_op_gets_an_editor_from_its_declarations(make_window):
    from augstudio.core.base.errors import AugstudioError
    from augstudio.core.ops import all_ops
    from augstudio.core.ops.step import parse_step
    from augstudio.gui.widgets.params import NumberField, ParamField

    def addable(name):  # an op with a required parameter (no default) is refused with a message
        try:
            parse_step({"op": name})
            return True
        except AugstudioError:
            return False

    win = make_window(None)
    ctrl = win.chain.ctrl
    ctrl.load(Recipe())
    names = [n for n in sorted(all_ops()) if addable(n)]
    assert win.chain.palette.topLevelItemCount() == len({c.family for c in all_ops().values()})
    for name in names:
        win.chain.add_op(name)
    assert [s.op for s in ctrl.model.steps] == names
    for row, name in enumerate(names):
        win.chain.steps.setCurrentIndex(win.chain.steps_model.index(row))
        ed = win.chain.editor
        params = all_ops()[name].params
        assert list(ed.fields) == [p.name for p in params]
        for p in params:
            f = ed.fields[p.name]
            assert isinstance(f, ParamField)
            if p.kind in ("float", "int") and p.low is not None and p.high is not None:
                assert isinstance(f.parts[0], NumberField) and f.parts[0].slider is not None
                # the widgets show the declared default
                assert f.parts[0].value() == pytest.approx(p.validate(p.default))
        assert ed.p_field.value() == 1.0
