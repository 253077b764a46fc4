"""Saliency maps are computed only while the Saliency panel is on screen: clicking through 20 thumbnails
with its tab hidden starts no saliency job; with it shown, at most one runs at a time and the Jobs list
keeps no pile of superseded maps. Without a model the panel says that a model is what it needs."""

from __future__ import annotations

from PySide6.QtCore import Qt

from augstudio.gui.shell.panel_host import PanelHost


def saliency_jobs(win):
    return [j for j in win.ctx.jobs if j.title.startswith("Saliency:")]


def click_thumbnails(win, qtbot, n, watch=None):
    view = win.browser.view
    for i in range(n):
        idx = view.model().index(i % view.model().rowCount())
        view.scrollTo(idx)
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center())
        qtbot.wait(15)
        if watch is not None:
            watch()


def test_saliency_runs_only_while_shown_and_one_at_a_time(make_window, qtbot, samples_root, tmp_path):
    from augstudio.core.models.loading import PROBE_ARCH, save_checkpoint
    from augstudio.core.models.networks import ProbeNet

    ckpt = save_checkpoint(tmp_path / "net.pt", ProbeNet(2, width=4, depth=1), PROBE_ARCH, ["a", "b"],
                           mean=(0.5,) * 3, std=(0.25,) * 3, arch_kwargs={"width": 4, "depth": 1})
    win = make_window(samples_root / "shapes")
    host = next(h for h in win.panel_hosts if h.title == "Saliency")
    host.build()
    panel = host.panel
    assert "needs a classifier" in panel.image.text()  # it asks for a model, not for an image
    panel.set_model_file(ckpt)
    qtbot.waitUntil(lambda: panel.model is not None, timeout=30000)
    assert isinstance(win.tabs.currentWidget(), PanelHost) is False  # the Preview tab is in front

    # hidden (its tab not shown, then the tab removed from the bar): 20 clicks start nothing
    click_thumbnails(win, qtbot, 10)
    win.set_tab_shown(host, False)
    click_thumbnails(win, qtbot, 10)
    qtbot.wait(100)
    assert saliency_jobs(win) == []

    # shown: one map at a time, the newest wins; the superseded ones leave the Jobs list
    win.set_tab_shown(host, True)
    win.tabs.setCurrentWidget(host)
    qtbot.waitUntil(lambda: len(saliency_jobs(win)) >= 1, timeout=5000)  # the shown image's map, once
    most = [0]

    def watch():
        running = sum(j.is_running() for j in saliency_jobs(win))
        most[0] = max(most[0], running)

    click_thumbnails(win, qtbot, 20, watch)
    qtbot.waitUntil(lambda: not panel.runner.busy(), timeout=60000)
    watch()
    assert most[0] <= 1
    assert panel.last_result is not None and panel.last_result["path"] == win.ctx.current_path()
    rows = [r for r in win.jobs.rows if r.handle.title.startswith("Saliency:")]
    assert all(not r.handle.superseded for r in rows) and len(rows) <= 3
    # showing the tab again computes nothing new for the same image
    n = len(saliency_jobs(win))
    win.tabs.setCurrentIndex(0)
    win.tabs.setCurrentWidget(host)
    qtbot.wait(100)
    assert len(saliency_jobs(win)) == n
