"""One model-loading job for every panel: it runs off the GUI thread, two panels asking for the same file
while it loads share that one job, a later request is served from the cache without a job, and a file
that changed on disk is loaded again."""

from __future__ import annotations

import os
import threading

import torch

from augstudio.core.models import loading
from augstudio.core.models.networks import ProbeNet
from augstudio.gui.panels.saliency import SaliencyPanel
from augstudio.gui.panels.tta import TTAPanel
from augstudio.gui.qt.context import AppContext


def test_panels_share_one_cached_model_loading_job(qtbot, tmp_path, monkeypatch):
    ckpt = loading.save_checkpoint(tmp_path / "net.pt", ProbeNet(3, width=4, depth=1), loading.PROBE_ARCH,
                                   ["circle", "square", "star"], mean=(0.5,) * 3, std=(0.25,) * 3,
                                   arch_kwargs={"width": 4, "depth": 1})
    threads = []
    real = loading.load_model
    monkeypatch.setattr(loading, "load_model",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    ctx = AppContext(max_threads=2)
    jobs = []
    ctx.job_started.connect(jobs.append)
    saliency, tta = SaliencyPanel(ctx), TTAPanel(ctx)
    for p in (saliency, tta):
        qtbot.addWidget(p)

    # both panels ask while the first request is loading: one job, both get the model
    saliency.set_model_file(ckpt)
    tta.model_edit.setText(str(ckpt))
    assert tta.load_model() is jobs[0]
    qtbot.waitUntil(lambda: saliency.model is not None and tta.classifier is not None, timeout=30000)
    assert len(jobs) == 1 and jobs[0].title == "Load model net.pt" and jobs[0].state == "done"
    assert threads and threading.main_thread() not in threads  # loaded on a pool thread
    assert tta.classifier.module is saliency.model.module
    assert saliency.model.classes == tta.classifier.classes == ["circle", "square", "star"]

    # asked again later (another panel, the same file): from the cache, no job, at once
    again = SaliencyPanel(ctx)
    qtbot.addWidget(again)
    again.set_model_file(ckpt)
    assert again.model is saliency.model and len(jobs) == 1 and len(threads) == 1

    # the file changed on disk: loaded again, by a new job
    st = os.stat(ckpt)
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again.set_model_file(ckpt)
    qtbot.waitUntil(lambda: len(jobs) == 2 and not jobs[1].is_running(), timeout=30000)
    qtbot.waitUntil(lambda: again.model is not saliency.model, timeout=5000)
    assert torch.equal(next(again.model.module.parameters()), next(saliency.model.module.parameters()))
    assert ctx.shutdown(5000)
