"""What users of image viewers expect, driven as a user would: the ops filter, an op dragged from the
palette into the chain, the editor's title following a moved step, sliders over the typical span with
the legal range typed, H/W size fields, the grid's per-copy parameters and a cell opened large, the steps
view, fit / 1:1 and the pixel readout, copy as code, no stale preview, one unreadable count, a dropped
recipe, an export's folder, and the warnings where numbers mean little."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl

from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.io.images import read_image
from augstudio.gui.panels.preview import MESSAGE_PAGE, PAGES


def ops(win):
    return [s.op for s in win.chain.ctrl.model.steps]


def wait_result(qtbot, win, check, timeout=15000):
    qtbot.waitUntil(lambda: win.preview.last_result is not None and check(win.preview.last_result), timeout=timeout)
    return win.preview.last_result


def test_ops_filter_type_ahead_and_letters_never_reroll(make_window, qtbot):
    win = make_window(None)
    ce = win.chain
    shown = ce.palette.set_filter("crop")
    assert "random_resized_crop" in shown and "hflip" not in shown
    assert shown[0] in ("center_crop", "random_crop", "random_resized_crop")  # names first
    assert ce.palette.item_for("hflip").isHidden() and not ce.palette.item_for("center_crop").isHidden()
    ce.search.setText("blur gaussian")
    assert ce.palette.current_op() == "gaussian_blur"
    ce.search.clear()
    copy = win.preview.copy
    ce.palette.setFocus()
    qtbot.keyClick(ce.palette, Qt.Key.Key_R)  # a letter in the tree: to the filter box, not Reroll
    qtbot.wait(50)
    assert ce.search.text() == "r" and win.preview.copy == copy
    # Enter in the filter box adds the first match
    ce.ctrl.load(Recipe())
    ce.search.setText("vflip")
    qtbot.keyClick(ce.search, Qt.Key.Key_Return)
    assert ops(win) == ["vflip"]


def test_drag_an_op_from_the_palette_into_the_chain(make_window, qtbot):
    win = make_window(None)
    ce = win.chain
    ce.ctrl.load(load_recipe({"steps": [{"op": "hflip"}, {"op": "rotate", "degrees": 10}]}))
    md = ce.palette.mimeData([ce.palette.item_for("cutout")])
    view = ce.steps
    r = view.visualRect(ce.steps_model.index(1))
    from PySide6.QtGui import QDropEvent

    ev = QDropEvent(QPointF(r.center().x(), r.top() + 2), Qt.DropAction.CopyAction, md,
                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    view.dropEvent(ev)
    assert ops(win) == ["hflip", "cutout", "rotate"]
    assert view.currentIndex().row() == 1 and "2. cutout" in ce.editor.title.text()
    ce.ctrl.stack.undo()
    assert ops(win) == ["hflip", "rotate"]


def test_editor_title_follows_a_moved_step(make_window, qtbot):
    win = make_window(None)
    ce = win.chain
    ce.ctrl.load(load_recipe({"steps": [{"op": "hflip"}, {"op": "vflip"}, {"op": "rotate"}, {"op": "cutout"}]}))
    ce.steps.setCurrentIndex(ce.steps_model.index(3))
    assert "4. cutout" in ce.editor.title.text()
    ce.ctrl.move(3, 2)  # what a drag in the list does
    assert "3. cutout" in ce.editor.title.text() and ce.editor.row == 2
    ce.ctrl.remove(0)
    assert "2. cutout" in ce.editor.title.text()


def test_sliders_cover_the_typical_span_and_the_spin_box_the_legal_range(make_window, qtbot):
    from augstudio.core.ops.registry import get_op

    win = make_window(None)
    ce = win.chain
    ce.ctrl.load(load_recipe({"steps": [{"op": "rotate", "degrees": 15},
                                        {"op": "random_resized_crop", "size": [96, 128]}]}))
    ce.steps.setCurrentIndex(ce.steps_model.index(0))
    low = ce.editor.fields["degrees"].parts[0]
    param = next(p for p in get_op("rotate").params if p.name == "degrees")
    lo, hi = param.slider_range()
    assert (lo, hi) != (param.low, param.high)  # a typical span inside the legal range
    assert low.span == (lo, hi)
    # a drag over the slider's whole width moves the value across the typical span only
    s = low.slider
    s.setValue(s.maximum())
    assert ce.ctrl.model.steps[0].values["degrees"][1] <= hi
    # 50 steps of 1000 move it by 5% of the span (not of -360..360)
    ce.editor.fields["degrees"].parts[1].spin.setValue(15)
    s2 = ce.editor.fields["degrees"].parts[1].slider
    before = ce.editor.fields["degrees"].parts[1].value()
    s2.setValue(s2.value() + 50)
    assert abs(ce.editor.fields["degrees"].parts[1].value() - before) <= (hi - lo) * 0.051
    # typing a legal value beyond the span is kept
    ce.editor.fields["degrees"].parts[1].spin.setValue(300)
    assert ce.ctrl.model.steps[0].values["degrees"][1] == pytest.approx(300)
    # sizes are [H, W], labelled so
    ce.steps.setCurrentIndex(ce.steps_model.index(1))
    size = ce.editor.fields["size"]
    from PySide6.QtWidgets import QLabel

    labels = [w.text() for w in size.findChildren(QLabel)]
    assert labels[:2] == ["H", "W"] and [p.value() for p in size.parts] == [96, 128]


def test_grid_shows_every_copys_parameters_and_a_click_opens_a_cell(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes")
    pv = win.preview
    pv.n_spin.setValue(4)
    pv.set_grid_mode(True)
    res = wait_result(qtbot, win, lambda r: r["mode"] == "grid" and len(r["outputs"]) == 4)
    tree = pv.params
    assert tree.topLevelItemCount() == 4
    for k, (c, _a, records, _s) in enumerate(res["outputs"]):
        top = tree.topLevelItem(k)
        assert top.text(0) == f"copy {c}" and top.childCount() == len(records)
        applied = [i for i, r in enumerate(records) if r["applied"]]
        if applied:
            child = top.child(applied[0])
            assert child.toolTip(2) == child.text(2) != ""  # the whole text, where the column cuts it
    # click the third cell: it opens large, with its own parameters
    pv.grid.clicked.emit(2)
    res2 = wait_result(qtbot, win, lambda r: r["mode"] == "single")
    assert res2["outputs"][0][0] == res["outputs"][2][0] and pv.stack.currentIndex() == PAGES["single"]
    assert res2["outputs"][0][2] == res["outputs"][2][2]
    # Grid again: the same grid
    pv.set_grid_mode(True)
    res3 = wait_result(qtbot, win, lambda r: r["mode"] == "grid")
    assert [o[0] for o in res3["outputs"]] == [o[0] for o in res["outputs"]]


def test_steps_view_fit_actual_size_and_pixel_readout(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes")
    win.chain.ctrl.load(load_recipe({"seed": 2, "steps": [{"op": "hflip"}, {"op": "rotate", "degrees": 20},
                                                          {"op": "brightness", "factor": [1.3, 1.3]}]}))
    pv = win.preview
    win.steps_action.trigger()
    res = wait_result(qtbot, win, lambda r: r["mode"] == "steps" and "frames" in r)
    frames = res["frames"]
    assert len(frames) == 4 and pv.stack.currentIndex() == PAGES["steps"]
    pic = read_image(win.ctx.current_path())
    assert np.array_equal(frames[0][1], res["original"])
    # each frame is the steps so far, unfused; the last one is the fused result within a grey level or so
    recipe = win.ctx.recipe()
    records = res["outputs"][0][2]
    pipe = recipe.pipeline()
    after2 = pipe.replay(pic, records[:2] + [dict(records[2], applied=False)], fuse=False)
    from augstudio.gui.qt.images import display_array

    assert np.array_equal(frames[2][1], display_array(after2))
    final = res["outputs"][0][1].astype(int)
    assert np.abs(frames[-1][1].astype(int) - final).mean() < 8
    assert "2. rotate" in pv.steps.labels[2].text
    # fit and 1:1
    qtbot.wait(50)
    pv.fit()
    pv.actual_size()
    vb = pv.steps.views[0]
    (x0, x1), _ = vb.viewRange()
    assert x1 - x0 == pytest.approx(vb.width(), rel=0.05)
    # the pixel under the cursor
    pos = vb.mapViewToScene(QPointF(3.5, 4.5))
    pv.steps._moved(pos)
    v = frames[0][1][4, 3]
    assert pv.pixel_label.text() == f"x 3, y 4: RGB {v[0]} {v[1]} {v[2]}"


def test_copy_as_code_loads_this_recipe(make_window, qtbot, photo_folder, tmp_path):
    win = make_window(photo_folder)
    ce = win.chain
    ce.ctrl.load(load_recipe({"seed": 7, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 9}],
                              "batch": [{"op": "mixup"}]}))
    code = ce.copy_code()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == code
    ns: dict = {}
    exec(compile(code, "<copied>", "exec"), ns)  # noqa: S102 - what the user pastes into training code
    assert ns["recipe"] == ce.ctrl.recipe()
    assert len(ns["train"]) == 4 and ns["train"].transform is not None  # the open ImageFolder
    img, label = ns["train"][0]
    assert img.dtype == torch.uint8 and img.dim() == 3  # a tensor, ready for a DataLoader
    assert "batch_transform(num_classes=2)" in code
    images, soft = ns["mix"](torch.stack([img.float() / 255] * 2), torch.tensor([0, 1]))
    assert soft.shape == (2, 2)
    # saved: the code loads the file
    path = tmp_path / "mine.yaml"
    assert win.save_recipe(path=path)
    code = ce.copy_code()
    assert f"augstudio.load_recipe({str(path)!r})" in code
    ns = {}
    exec(compile(code, "<copied>", "exec"), ns)  # noqa: S102
    assert ns["recipe"] == load_recipe(path)


def test_no_stale_preview_and_one_unreadable_count(make_window, qtbot, photo_folder, tmp_path):
    (photo_folder / "cat" / "junk.jpg").write_bytes(b"not a jpeg" * 20)
    (photo_folder / "cat" / "junk2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    win = make_window(photo_folder)
    pv = win.preview
    wait_result(qtbot, win, lambda r: True)
    assert pv.stack.currentIndex() == PAGES["single"]
    m = win.browser.model
    # every thumbnail decoded: the header, the status bar and the marks agree
    for i in range(m.rowCount()):
        m.data(m.index(i), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: win.browser.loader.pending() == 0 and m.bad_count() == 2, timeout=10000)
    qtbot.wait(100)
    marked = sum(1 for i in range(m.rowCount()) if m.data(m.index(i), Qt.ItemDataRole.UserRole + 2))
    assert marked == 2 and "⚠ 2 unreadable" in win.browser.header.text() and win.bad_label.text() == "⚠ 2 unreadable"
    # select the corrupt file: the message replaces the pictures, nothing stale stays
    row = next(i for i in range(m.rowCount()) if m.items[i].path == "cat/junk.jpg")
    win.browser.view.setCurrentIndex(m.index(row))
    qtbot.waitUntil(lambda: pv.stack.currentIndex() == MESSAGE_PAGE, timeout=10000)
    assert pv.message.text().startswith("⚠") and pv.params.topLevelItemCount() == 0
    assert all(a is None for a in pv.single.arrays) and pv.single.labels[0].text == ""
    # an empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    win.open_folder(empty)
    qtbot.waitUntil(lambda: "No images" in pv.message.text(), timeout=5000)
    assert pv.stack.currentIndex() == MESSAGE_PAGE and "no images" in win.browser.header.text()
    assert win.folder_dialog_start() == str(empty)  # Open folder starts at the open dataset


def test_drop_a_recipe_and_the_export_folder(make_window, qtbot, photo_folder, tmp_path, monkeypatch):
    from PySide6.QtGui import QDesktopServices, QDropEvent

    from augstudio.gui.panels.jobs import start_export

    win = make_window(photo_folder)
    rec = tmp_path / "dropped.yaml"
    load_recipe({"seed": 4, "steps": [{"op": "vflip"}]}).save(rec)
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(rec))])
    win.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier))
    assert ops(win) == ["vflip"] and "dropped.yaml" in win.windowTitle()
    h = start_export(win.ctx, photo_folder, win.ctx.recipe(), tmp_path / "out", copies=1)
    qtbot.waitUntil(lambda: not h.is_running(), timeout=60000)
    row = win.jobs.row_for(h)
    assert not row.open_btn.isHidden()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    row.open_btn.click()
    assert opened == [str(tmp_path / "out")]


def test_mix_keeps_image_b_aspect():
    from augstudio.gui.panels.mix import fit_cover

    b = torch.zeros(3, 40, 160)
    b[:, :, 60:100] = 1.0  # a bright band in the middle third
    out = fit_cover(b, (64, 64))
    assert out.shape == (3, 64, 64)
    # scaled by 1.6 to 64 x 256, the centre 64 columns cut: the band fills it, not squeezed to a stripe
    assert out.mean() > 0.9


def test_evaluate_and_tta_warn_when_the_numbers_mean_little(make_window, qtbot, photo_folder):
    from augstudio.gui.panels.evaluate import small_data_warning, validation_size

    assert validation_size({"a": 5, "b": 5}, 0.2) == 2
    assert "Only 2 validation images" in small_data_warning({"a": 5, "b": 5}, 0.2)
    assert small_data_warning({"a": 100, "b": 100}, 0.2) == ""
    win = make_window(photo_folder)
    hosts = {h.title: h for h in win.panel_hosts}
    for t in ("Evaluate", "TTA"):
        hosts[t].build()
    ev = hosts["Evaluate"].panel
    assert "validation image" in ev.warning.text() and not ev.warning.isHidden()
    tta = hosts["TTA"].panel
    tta.trained_on = str(photo_folder)
    tta.classifier = object()  # a stand-in: only its presence matters here
    assert "trained on these images" in tta.check_data()
