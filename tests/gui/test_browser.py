"""The browser: the sample dataset opens, the class sidebar filters, bad files carry their reason, the
keyboard moves the current item, thumbnails are real decodes; and browsing never imports torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt

from augstudio.gui.panels.browser import BadRole, ItemRole, PixmapCache, make_thumbnail


def test_open_sample_dataset_and_filter_by_class(make_window, qtbot, samples_root):
    win = make_window(samples_root / "shapes", torch=False)
    b = win.browser
    assert b.model.rowCount() == 60
    labels = [b.sidebar.item(i).text() for i in range(b.sidebar.count())]
    assert labels[0].startswith("All") and "(60)" in labels[0]
    assert any(t.startswith("star") and "(15)" in t for t in labels)
    # click the 'star' row in the sidebar, as a user does
    row = next(i for i, t in enumerate(labels) if t.startswith("star"))
    rect = b.sidebar.visualItemRect(b.sidebar.item(row))
    qtbot.mouseClick(b.sidebar.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert b.model.rowCount() == 15
    items = [b.model.data(b.model.index(i), ItemRole) for i in range(15)]
    assert {it.class_name for it in items} == {"star"}
    assert win.ctx.current_item().class_name == "star"
    # back to all
    rect = b.sidebar.visualItemRect(b.sidebar.item(0))
    qtbot.mouseClick(b.sidebar.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert b.model.rowCount() == 60
    assert "shapes" in win.windowTitle()


def test_keyboard_navigation_moves_current_item(make_window, qtbot, samples_root):
    win = make_window(samples_root / "wafers", torch=False)
    v = win.browser.view
    v.setFocus()
    first = win.ctx.current_item()
    assert first == win.ctx.dataset().items[0]
    qtbot.keyClick(v, Qt.Key.Key_Right)
    assert win.ctx.current_item() == win.ctx.dataset().items[1]
    qtbot.keyClick(v, Qt.Key.Key_End)
    assert win.ctx.current_item() == win.ctx.dataset().items[-1]
    assert win.ctx.current_path().is_file()


def test_bad_files_have_a_warning_mark_and_reason(make_window, qtbot, photo_folder):
    (photo_folder / "cat" / "empty.png").write_bytes(b"")
    (photo_folder / "cat" / "junk.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    win = make_window(photo_folder, torch=False)
    m = win.browser.model
    rows = {m.data(m.index(i), ItemRole).path: i for i in range(m.rowCount())}
    assert "empty" in m.data(m.index(rows["cat/empty.png"]), Qt.ItemDataRole.ToolTipRole)
    # the junk file is only found out when its thumbnail is decoded in the background
    for i in range(m.rowCount()):
        m.data(m.index(i), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: m.data(m.index(rows["cat/junk.jpg"]), BadRole) is not None, timeout=5000)
    tip = m.data(m.index(rows["cat/junk.jpg"]), Qt.ItemDataRole.ToolTipRole)
    assert "not an image" in tip
    # good files get real thumbnails (not the placeholder)
    qtbot.waitUntil(lambda: m.cache.get("thing/thing_1.png") is not None, timeout=5000)
    pm = m.cache.get("thing/thing_1.png")
    assert max(pm.width(), pm.height()) == 96


def test_thumbnail_matches_pillow_and_keeps_wafer_categories(samples_root, astronaut, tmp_path):
    astronaut.save(tmp_path / "a.png")
    q = make_thumbnail(tmp_path / "a.png", 64)
    assert (q.width(), q.height()) == (64, 64)
    arr = np.frombuffer(q.constBits(), np.uint8).reshape(64, q.bytesPerLine())[:, : 64 * 3].reshape(64, 64, 3)
    ref = np.asarray(astronaut.resize((64, 64), Image.Resampling.BILINEAR), np.int16)
    assert np.abs(arr.astype(np.int16) - ref).mean() < 6
    wafer = next((samples_root / "wafers" / "Donut").glob("*.png"))
    q = make_thumbnail(wafer, 96)
    assert q.width() == 64  # nearest upscaling only by whole factors: 64 -> 64 (96 // 64 == 1)
    pal_im = Image.open(wafer)
    colors = {tuple(c) for c in np.asarray(pal_im.convert("RGB")).reshape(-1, 3)}
    w = q.width()
    got = np.frombuffer(q.constBits(), np.uint8).reshape(q.height(), q.bytesPerLine())[:, : w * 3]
    assert {tuple(c) for c in got.reshape(-1, 3)} <= colors


def test_pixmap_cache_is_bounded(qapp):  # a QPixmap needs the application
    from PySide6.QtGui import QPixmap

    cache = PixmapCache(budget_bytes=10 * 96 * 96 * 4)
    for i in range(50):
        pm = QPixmap(96, 96)
        cache.put(str(i), pm)
    assert len(cache) == 10 and cache.used <= cache.budget
    assert cache.get("49") is not None and cache.get("0") is None


def test_browsing_does_not_import_torch(tmp_path, samples_root):
    code = textwrap.dedent(f"""
        import os, sys, time
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ["AUGSTUDIO_SETTINGS_DIR"] = {str(tmp_path)!r}
        from augstudio.gui.shell.app import create_window, get_app
        app = get_app()
        win = create_window({str(samples_root / 'shapes')!r}, load_torch=False)
        end = time.time() + 20
        while time.time() < end and len(win.browser.cache) < 4:
            app.processEvents(); time.sleep(0.01)
        assert len(win.browser.cache) >= 4, "no thumbnails"
        print("TORCH" if "torch" in sys.modules else "NOTORCH", win.browser.model.rowCount())
        win._closing = True
        win.close()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "NOTORCH 60" in out.stdout
