"""The Qt plumbing every panel stands on: the one image -> QImage converter, errors crossing from a worker
as exception objects (the user reads the message, the log gets the traceback), and latest-wins runners
(listed in the Jobs panel or not, dropping superseded results)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtGui import QImage

from augstudio.core.base.errors import OutputError
from augstudio.core.base.jobs import Progress
from augstudio.core.io.images import Picture, read_image
from augstudio.gui.qt.context import AppContext
from augstudio.gui.qt.images import to_qimage
from augstudio.gui.qt.workers import CANCELLED, DONE, FAILED


def rgba_pixels(q: QImage) -> np.ndarray:
    q = q.convertToFormat(QImage.Format.Format_RGBA8888)
    a = np.frombuffer(q.constBits(), np.uint8, count=q.bytesPerLine() * q.height())
    return a.reshape(q.height(), q.bytesPerLine())[:, : 4 * q.width()].reshape(q.height(), q.width(), 4).copy()


def test_one_converter_for_arrays_pil_pictures_and_tensors(samples_root):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), np.uint8)
    gray = rng.integers(0, 256, (5, 7), np.uint8)
    rgba = rng.integers(0, 256, (5, 7, 4), np.uint8)
    opaque = np.concatenate([rgb, np.full((5, 7, 1), 255, np.uint8)], 2)
    gray4 = np.concatenate([np.repeat(gray[..., None], 3, 2), np.full((5, 7, 1), 255, np.uint8)], 2)
    cases = {
        "rgb array": (rgb, opaque), "gray array": (gray, gray4), "rgba array": (rgba, rgba),
        "pil rgb": (Image.fromarray(rgb), opaque), "pil gray": (Image.fromarray(gray), gray4),
        "pil rgba": (Image.fromarray(rgba, "RGBA"), rgba),
        "uint8 tensor": (torch.from_numpy(rgb).permute(2, 0, 1), opaque),
        "picture": (Picture(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), "rgb"), opaque),
        "float tensor": (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, opaque),
        "float map": (torch.from_numpy(gray).float() / 255, gray4),
    }
    for name, (image, want) in cases.items():
        q = to_qimage(image)
        assert (q.width(), q.height()) == (7, 5), name
        assert np.array_equal(rgba_pixels(q), want), name
    # a float tensor outside 0..1 is clamped
    assert rgba_pixels(to_qimage(torch.full((3, 2, 2), 2.0)))[..., :3].min() == 255
    # categorical pictures show their palette colours
    wafer = next((samples_root / "wafers" / "Donut").glob("*.png"))
    shown = rgba_pixels(to_qimage(read_image(wafer)))[..., :3]
    colors = {tuple(c) for c in np.asarray(Image.open(wafer).convert("RGB")).reshape(-1, 3)}
    assert {tuple(c) for c in shown.reshape(-1, 3)} == colors
    # the QImage owns its pixels: changing the source later changes nothing
    src = rgb.copy()
    q = to_qimage(src)
    src[:] = 0
    assert np.array_equal(rgba_pixels(q), opaque)


@pytest.fixture
def ctx(qtbot):
    c = AppContext(max_threads=2)
    yield c
    assert c.shutdown(5000)


def test_an_error_in_a_worker_arrives_as_the_exception_its_traceback_in_the_log(ctx, qtbot, caplog):
    from augstudio.gui.panels.jobs import JobsPanel

    jobs = JobsPanel(ctx)
    qtbot.addWidget(jobs)
    boom = ValueError("the probe has no classes")

    def bug(token):
        yield Progress(0, 1)
        raise boom

    def refused(token):
        raise OutputError("/nowhere: cannot write; choose a writable folder")

    got = []
    with caplog.at_level(logging.WARNING, logger="augstudio.gui"):
        h1 = ctx.run_job("buggy job", bug, on_error=got.append)
        h2 = ctx.run_job("refused job", refused, on_error=got.append)
        qtbot.waitUntil(lambda: len(got) == 2, timeout=5000)
    assert h1.state == h2.state == FAILED
    assert got[0] is boom or got[1] is boom  # the very exception object crossed the thread boundary
    assert h1.error is boom and h1.message == "ValueError: the probe has no classes"
    assert h2.message == "/nowhere: cannot write; choose a writable folder"  # written for users: as it is
    for h in (h1, h2):
        shown = jobs.row_for(h).message.text()
        assert shown == h.message and "Traceback" not in shown and "line " not in shown
    logged = {r.getMessage(): r for r in caplog.records}
    assert "buggy job failed" in logged and logged["buggy job failed"].levelno == logging.ERROR
    assert logged["buggy job failed"].exc_info[1] is boom
    assert "in bug" in caplog.text and "Traceback" in caplog.text  # the log has where it happened


def test_a_broken_panel_tab_shows_the_message_and_logs_the_traceback(ctx, qtbot, tmp_path, monkeypatch, caplog):
    import sys

    from augstudio.gui.shell.panel_host import PanelHost

    (tmp_path / "broken_tab.py").write_text("class Tab:\n    def __init__(self, ctx, parent=None):\n"
                                            "        raise KeyError('classes')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ctx, "is_torch_ready", lambda: True)
    host = PanelHost(ctx, "Broken", "broken_tab:Tab")
    with caplog.at_level(logging.ERROR, logger="augstudio.gui"):
        host.build()
    sys.modules.pop("broken_tab", None)
    assert host.note.text() == "The Broken panel failed to start: KeyError: 'classes'"
    assert "Traceback" in caplog.text and "broken_tab.py" in caplog.text


def test_latest_wins_listed_drops_stale_results_and_reports_the_newest_error(ctx, qtbot):
    runner = ctx.latest(listed=True)
    started = []
    ctx.job_started.connect(started.append)
    gate = threading.Event()
    got, errors = [], []

    def work(i):
        def fn(token):
            if i == 0:
                gate.wait(5)  # the first one is still running when the others arrive
            token.check(f"request {i}")
            return i
        return fn

    for i in range(4):
        runner.submit(work(i), got.append, errors.append, title=f"request {i}")
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy(), timeout=5000)
    qtbot.wait(20)
    assert got == [3] and errors == []
    # the first ran and was cancelled; 1 and 2 were superseded before they started; all went to Jobs
    assert [h.title for h in started] == ["request 0", "request 3"]
    assert started[0].state == CANCELLED and started[1].state == DONE

    def fails(token):
        raise ValueError("bad input")

    runner.submit(fails, got.append, errors.append, title="failing")
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "bad input"
