"""Preview (same pixels as the core, live after an edit, grid / reroll / lock), the Jobs panel (export
from the dialog, cancel, close while a job runs), latest-wins rendering, and panel tabs that fail."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from augstudio.core.base.jobs import Progress, run_job
from augstudio.core.engine.recipe import load_recipe
from augstudio.core.io.images import read_image
from augstudio.core.workflows.export import export_job
from augstudio.gui.panels.jobs import start_export
from augstudio.gui.qt.images import display_array
from augstudio.gui.qt.workers import CANCELLED, DONE, FAILED
from augstudio.gui.shell.panel_host import PanelHost


def wait_render(qtbot, win, timeout=10000):
    with qtbot.waitSignal(win.preview.rendered, timeout=timeout) as blocker:
        pass
    return blocker.args[0]


def expected(win, copy):
    path = win.ctx.current_path()
    pic = read_image(path)
    out, records = win.ctx.recipe().pipeline().run(pic, win.ctx.recipe().seed, win.ctx.current_item().path, copy)
    return display_array(out), records


def test_preview_matches_core_and_updates_after_a_parameter_change(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes")
    ctrl = win.chain.ctrl
    ctrl.load(load_recipe({"seed": 3, "steps": [{"op": "rotate", "degrees": [-5, 5]},
                                                 {"op": "color_jitter", "brightness": 0.4}]}))
    # (a render of the bundled recipe may still be arriving: wait for this recipe's)
    qtbot.waitUntil(lambda: win.preview.last_result is not None
                    and [r["op"] for r in win.preview.last_result["outputs"][0][2]] == ["rotate", "color_jitter"],
                    timeout=10000)
    res = win.preview.last_result
    want, records = expected(win, 0)
    assert np.array_equal(res["outputs"][0][1], want)
    assert res["outputs"][0][2] == records
    angle0 = records[0]["params"]["angle"]
    assert -5 <= angle0 <= 5
    # the params table shows what was drawn
    assert win.preview.params.topLevelItem(0).text(2) == json.dumps(records[0]["params"], separators=(", ", ": "))

    # the user changes the range with the spin box: the preview re-renders by itself
    win.chain.steps.setCurrentIndex(win.chain.steps_model.index(0))
    with qtbot.waitSignal(win.preview.rendered, timeout=10000):
        win.chain.editor.fields["degrees"].parts[0].spin.setValue(60)  # low 60 pushes high to 60
    res = win.preview.last_result
    assert res["outputs"][0][2][0]["params"]["angle"] == pytest.approx(60)
    want, _ = expected(win, 0)
    assert np.array_equal(res["outputs"][0][1], want)
    assert "preview" in win.time_label.text() and "ms" in win.time_label.text()


def test_grid_mode_reroll_and_lock(make_window, qtbot, samples_root):
    win = make_window(samples_root / "wafers")  # opens with the bundled wafer recipe (geometric ops)
    qtbot.waitUntil(lambda: win.preview.last_result is not None, timeout=10000)
    assert [s.op for s in win.chain.ctrl.model.steps] == ["hflip", "vflip", "rotate"]
    win.preview.n_spin.setValue(4)
    with qtbot.waitSignal(win.preview.rendered, timeout=10000):
        qtbot.mouseClick(win.preview.mode_btn, Qt.MouseButton.LeftButton)
    res = win.preview.last_result
    assert [o[0] for o in res["outputs"]] == [0, 1, 2, 3]
    for c, arr, _rec, _s in res["outputs"]:
        assert np.array_equal(arr, expected(win, c)[0])
    # categorical pictures keep their palette colours only
    pal_colors = {tuple(c) for c in res["original"].reshape(-1, 3)}
    for _c, arr, _r, _s in res["outputs"]:
        assert {tuple(c) for c in arr.reshape(-1, 3)} <= pal_colors
    assert win.preview.grid.labels[2].text.startswith("copy 2")
    # R rerolls: the next 4 copy indices
    win.preview.setFocus()
    with qtbot.waitSignal(win.preview.rendered, timeout=10000):
        qtbot.keyClick(win, Qt.Key.Key_R)
    assert [o[0] for o in win.preview.last_result["outputs"]] == [4, 5, 6, 7]
    # locked: R does nothing
    win.preview.lock.setChecked(True)
    qtbot.keyClick(win, Qt.Key.Key_R)
    assert win.preview.copy == 4 and not win.preview.reroll_btn.isEnabled()


def test_latest_request_wins(make_window, qtbot):
    win = make_window(None, torch=False)
    runner = win.ctx.preview_runner
    got = []

    def slow(i):
        def fn(token):
            for _ in range(20):
                token.check()
                time.sleep(0.005)
            return i
        return fn

    for i in range(6):
        runner.submit(slow(i), got.append)
    qtbot.waitUntil(lambda: not runner.busy(), timeout=5000)
    qtbot.wait(50)
    assert got == [5]


def test_export_from_the_dialog_matches_the_cli_job(make_window, qtbot, photo_folder, tmp_path):
    win = make_window(photo_folder)
    win.chain.ctrl.load(load_recipe({"seed": 1, "steps": [{"op": "hflip", "p": 0.5},
                                                           {"op": "rotate", "degrees": 20}]}))
    dlg = win.show_export()
    out = tmp_path / "out_gui"
    dlg.out.setText(str(out))
    dlg.copies.setValue(2)
    dlg.seed.setValue(5)
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    with qtbot.waitSignal(win.ctx.job_started, timeout=5000) as started:
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    handle = started.args[0]
    if handle.is_running():
        with qtbot.waitSignal(handle.finished, timeout=60000):
            pass
    assert handle.state == DONE, handle.message
    assert handle.result.written == 8 and handle.result.bad == 0
    row = win.jobs.row_for(handle)
    assert row.bar.value() == row.bar.maximum() and "8 images written" in row.message.text()
    # the CLI's job with the same settings writes the same bytes
    ref = tmp_path / "out_cli"
    run_job(export_job(photo_folder, win.ctx.recipe(), ref, copies=2, seed=5))
    assert (out / "manifest.jsonl").read_bytes() == (ref / "manifest.jsonl").read_bytes()
    for f in ref.rglob("*.png"):
        assert (out / f.relative_to(ref)).read_bytes() == f.read_bytes()


def test_export_dialog_refuses_output_inside_the_source(make_window, photo_folder):
    win = make_window(photo_folder)
    dlg = win.show_export()
    dlg.out.setText(str(photo_folder / "cat" / "out"))
    dlg.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert "inside the source folder" in dlg.error.text() and dlg.isVisible() and dlg.handle is None
    dlg.reject()


def slow_job(token, steps=400, pause=0.01):
    for i in range(steps):
        token.check(f"step {i}")
        time.sleep(pause)
        yield Progress(i + 1, steps, f"step {i + 1}")
    return "finished"


def test_cancel_a_job_from_its_row(make_window, qtbot):
    win = make_window(None, torch=False)
    progress = []
    handle = win.ctx.run_job("slow", slow_job, on_progress=progress.append)
    qtbot.waitUntil(lambda: handle.last is not None and handle.last.done >= 3, timeout=5000)
    row = win.jobs.row_for(handle)
    assert row.bar.maximum() == 400 and handle.eta() is not None
    with qtbot.waitSignal(handle.cancelled, timeout=5000):
        qtbot.mouseClick(row.cancel_btn, Qt.MouseButton.LeftButton)
    assert handle.state == CANCELLED and handle.last.done < 400
    assert handle.message.startswith("cancelled: step")  # the job's own message, shown in its row
    assert progress and "cancelled" in row.state.text()


def test_failed_job_shows_its_message(make_window, qtbot):
    from augstudio.core.base.errors import OutputError

    win = make_window(None, torch=False)

    def bad(token):
        yield Progress(0, 1)
        raise OutputError("/nowhere: cannot write; choose a writable folder")

    handle = win.ctx.run_job("bad", bad)
    with qtbot.waitSignal(handle.failed, timeout=5000):
        pass
    assert handle.state == FAILED
    assert "choose a writable folder" in win.jobs.row_for(handle).message.text()


def test_close_while_a_job_runs_exits_cleanly(make_window, qtbot, photo_folder, tmp_path):
    win = make_window(photo_folder)
    h1 = win.ctx.run_job("slow", slow_job)
    h2 = start_export(win.ctx, photo_folder, load_recipe({"steps": [{"op": "rotate"}]}), tmp_path / "o",
                      copies=50)
    qtbot.waitUntil(lambda: h1.last is not None, timeout=5000)
    win.close()
    assert win.quit_asked == [["slow", h2.title]]  # the user was asked, and said yes
    # shutdown waits a moment for jobs that stop between steps (the app's process then exits at once)
    qtbot.waitUntil(lambda: win.ctx.pool.activeThreadCount() == 0, timeout=3000)
    assert h1.token.cancelled and h2.token.cancelled
    qtbot.waitUntil(lambda: not h1.is_running() and not h2.is_running(), timeout=2000)
    assert h1.state == CANCELLED


def test_panel_tabs_show_errors_instead_of_breaking(make_window, qtbot, tmp_path, monkeypatch):
    import sys

    mod = tmp_path / "broken_panel_mod.py"
    mod.write_text("class BrokenPanel:\n    def __init__(self, ctx, parent=None):\n        raise ValueError('no model loaded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    win = make_window(None)
    missing = PanelHost(win.ctx, "Nope", "augstudio.gui.no_such_panel:NopePanel")
    missing.build()
    assert "not available" in missing.note.text() and missing.panel is None
    broken = PanelHost(win.ctx, "Broken", "broken_panel_mod:BrokenPanel")
    broken.build()
    assert "no model loaded" in broken.note.text()
    sys.modules.pop("broken_panel_mod", None)
    # the real tabs are listed, in order, and building them never raises
    titles = [win.tabs.tabText(i) for i in range(win.tabs.count())]
    assert titles == ["Preview", "Saliency", "Mix", "Style", "TTA", "Evaluate"]
    win.build_all_panels()
    for h in win.panel_hosts:
        assert h.panel is not None or h.error


def test_settings_persist_between_windows(make_window, photo_folder):
    win = make_window(photo_folder, torch=False)
    win.set_device("cpu")
    win.close()
    win2 = make_window(None, torch=False)
    assert win2.settings.last_folder() == str(photo_folder)
    assert win2.settings.recent_folders()[0] == str(photo_folder)
    assert win2.settings.device() == "cpu" and win2.device_actions["cpu"].isChecked()
    assert not win2.settings.geometry().isEmpty()


def test_preview_explains_an_op_refused_on_categorical_images(make_window, qtbot, samples_root):
    win = make_window(samples_root / "wafers")
    qtbot.waitUntil(lambda: win.preview.last_result is not None, timeout=10000)
    win.chain.steps.setCurrentIndex(win.chain.steps_model.index(2))
    win.chain.add_op("color_jitter")
    qtbot.waitUntil(lambda: win.preview.message.isVisible(), timeout=10000)
    text = win.preview.message.text()
    assert "color_jitter" in text and "categorical" in text
    win.chain.undo_action.trigger()
    qtbot.waitUntil(lambda: not win.preview.message.isVisible(), timeout=10000)
