"""The window fits the screen it is on: at 1280 x 800 and 1920 x 1080 (simulated available geometry),
after visiting every tab with the bundled samples and a folder of large photos, the window lies inside the
available area and no dock is narrower than it can be read; a saved geometry from a larger screen and a
squeezed saved layout come back fitted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QRect

from augstudio.gui.shell import layout
from augstudio.gui.shell.panel_host import PanelHost


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory):
    """Six 2000 x 1500 photos (skimage.data, scaled up) in two classes."""
    from skimage import data

    root = tmp_path_factory.mktemp("large") / "large_photos"
    for cls, arrs in {"a": [data.astronaut(), data.chelsea(), data.coffee()],
                      "b": [data.rocket(), data.astronaut()[::-1], data.coffee()[:, ::-1]]}.items():
        (root / cls).mkdir(parents=True)
        for i, a in enumerate(arrs):
            Image.fromarray(np.ascontiguousarray(a)).resize((2000, 1500)).save(root / cls / f"{cls}{i}.jpg", quality=85)
    return root


def fits(win, screen: QRect) -> list[str]:
    """What is wrong with the window's fit on ``screen`` (empty: nothing)."""
    bad = []
    fg = win.frameGeometry()
    if not screen.contains(fg):
        bad.append(f"window {fg.getRect()} outside the screen {screen.getRect()}")
    hint = win.minimumSizeHint()
    if hint.width() > screen.width() or hint.height() > screen.height():
        bad.append(f"the layout needs {hint.width()} x {hint.height()}")
    for dock, title in ((win.browser_dock, "Browser"), (win.chain_dock, "Chain")):
        if dock.isVisible() and dock.width() < layout.MIN_DOCK_WIDTH[title]:
            bad.append(f"{title} dock {dock.width()} px wide")
    pal = win.chain.palette
    if pal.isVisible() and pal.viewport().width() < 150:
        bad.append(f"the ops list is {pal.viewport().width()} px wide")
    return bad


def visit_every_tab(win, qtbot):
    for i in range(win.tabs.count()):
        win.tabs.setCurrentIndex(i)
        w = win.tabs.widget(i)
        if isinstance(w, PanelHost):
            qtbot.waitUntil(lambda w=w: w.panel is not None or w.error is not None, timeout=20000)
        qtbot.wait(60)
    win.tabs.setCurrentIndex(0)
    qtbot.wait(60)


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_window_fits_the_screen_after_every_tab_and_large_photos(make_window, qtbot, samples_root,
                                                                   large_photos, size):
    make_window.screen = screen = QRect(0, 0, *size)
    win = make_window(samples_root)
    qtbot.wait(100)
    assert fits(win, screen) == []
    visit_every_tab(win, qtbot)
    assert fits(win, screen) == [], "after visiting every tab with the samples"
    assert win.open_folder(large_photos)
    qtbot.waitUntil(lambda: win.preview.last_result is not None, timeout=20000)
    visit_every_tab(win, qtbot)
    for _ in range(3):  # browse a few large photos
        v = win.browser.view
        v.setCurrentIndex(v.model().index(v.currentIndex().row() + 1))
        qtbot.wait(50)
    assert fits(win, screen) == [], "after the large photos"
    # the Mix tab, the widest before: still inside after leaving it
    win.tabs.setCurrentIndex(2)
    qtbot.wait(100)
    win.tabs.setCurrentIndex(0)
    qtbot.wait(100)
    assert fits(win, screen) == []
    win.grab().save(str(qtbot_screenshot_dir(win) / f"fit_{size[0]}x{size[1]}.png"))


def qtbot_screenshot_dir(win):
    import tempfile
    from pathlib import Path

    d = Path(tempfile.gettempdir()) / "augstudio-test-shots"
    d.mkdir(exist_ok=True)
    return d


def test_a_saved_layout_from_a_larger_screen_comes_back_fitted(make_window, qtbot, samples_root):
    from PySide6.QtCore import Qt

    make_window.screen = QRect(0, 0, 2560, 1440)
    big = make_window(samples_root / "shapes", torch=False)
    big.resize(2400, 1350)
    big.move(100, 60)
    # a squeezed layout: the chain dock dragged as narrow as it goes
    big.resizeDocks([big.chain_dock], [40], Qt.Orientation.Horizontal)
    qtbot.wait(50)
    big._closing = True
    big.close()
    make_window.screen = screen = QRect(0, 0, 1280, 800)
    win = make_window(samples_root / "shapes", torch=False)
    qtbot.wait(100)
    assert win.width() <= 1280 and win.height() <= 800
    assert fits(win, screen) == []
    # reset layout puts every dock back, shown
    win.jobs_dock.hide()
    win.set_tab_shown(win.panel_hosts[1], False)
    win.reset_layout()
    qtbot.wait(50)
    assert win.jobs_dock.isVisible() and win.tabs.isTabVisible(1)
    assert fits(win, screen) == []


def test_view_menu_shows_and_hides_every_panel(make_window, qtbot):
    win = make_window(None, torch=False)
    for dock in (win.browser_dock, win.chain_dock, win.jobs_dock):
        a = dock.toggleViewAction()
        assert a.isEnabled()
        a.trigger()
        assert not dock.isVisible()
        a.trigger()
        assert dock.isVisible()
    a = win.tab_actions["Mix"]
    a.setChecked(False)
    assert not win.tabs.isTabVisible(2) and win.settings.hidden_tabs() == ["Mix"]
    a.setChecked(True)
    assert win.tabs.isTabVisible(2) and win.settings.hidden_tabs() == []


def test_initial_size_and_clamp_helpers():
    assert layout.initial_size(QRect(0, 0, 2560, 1440)).toTuple() == (1440, 900)
    s = layout.initial_size(QRect(0, 0, 1280, 800))
    assert s.width() <= 1280 - layout.ASSUMED_FRAME.width() and s.height() <= 800 - layout.ASSUMED_FRAME.height()
    b, c = layout.dock_widths(1280)
    assert b >= layout.MIN_DOCK_WIDTH["Browser"] and c >= layout.MIN_DOCK_WIDTH["Chain"] and b + c < 700
