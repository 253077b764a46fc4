"""The saliency panel: train the probe as a job, compute a map as a job (the same as the core's), and the
display controls (opacity, colormap, threshold -> box) acting without recomputation; model files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_image
from augstudio.core.methods.saliency import LOCALISE, compute_saliency, saliency_box
from augstudio.core.models.loading import load_model
from augstudio.gui.panels.saliency import SaliencyPanel
from augstudio.gui.qt.context import AppContext

PROBE = dict(size=24, epochs=2, width=4, batch_size=8)


def _wait_job(qtbot, panel, action):
    with qtbot.waitSignal(panel.ctx.job_started, timeout=5000) as started:
        action()
    handle = started.args[0]
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=60000)
    return handle


def test_saliency_panel_probe_compute_and_controls(qtbot, tmp_path, samples_root):
    torch.set_num_threads(1)
    root = tmp_path / "shapes"
    for cls in ("circle", "square"):
        (root / cls).mkdir(parents=True)
        for f in sorted((samples_root / "shapes" / cls).glob("*.jpg"))[:4]:
            shutil.copy(f, root / cls / f.name)
    ctx = AppContext(max_threads=2)
    panel = SaliencyPanel(ctx)
    panel.probe_kwargs = dict(PROBE)
    messages = []
    panel.warn = messages.append
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    assert panel.train_probe() is None and messages  # no dataset yet: a message, no job

    ds = scan(root)
    ctx.set_dataset(ds)
    assert panel.model is None and panel.train_btn.isEnabled() and not panel.compute_btn.isEnabled()
    h = _wait_job(qtbot, panel, panel.train_btn.click)
    assert h.state == "done", h.message
    qtbot.waitUntil(lambda: panel.model is not None, timeout=10000)
    assert panel.model.classes == ["circle", "square"]
    assert [panel.target.itemText(i) for i in range(panel.target.count())] == ["predicted class", "circle", "square"]
    probe_file = Path(h.result.meta["path"])
    assert probe_file.parent == tmp_path / "settings" / "probes" and probe_file.is_file()

    # selecting an item computes its map as a job; the result equals the core's
    panel.method.setCurrentText("vanilla")
    item = ds.items[5]
    _wait_job(qtbot, panel, lambda: ctx.set_current_item(item))
    qtbot.waitUntil(lambda: panel.last_result is not None and not panel.runner.busy(), timeout=10000)
    res = panel.last_result
    ref = compute_saliency(load_model(probe_file), [read_image(ds.abspath(item))], **LOCALISE)
    assert torch.allclose(res["map"], ref.maps[0], atol=1e-5)
    assert res["target"] == ref.targets[0]
    assert res["box"] == saliency_box(ref.maps[0], 0.7)
    assert res["overlay"].shape == (128, 128, 3)

    # display controls re-render without a new job
    jobs_before = len(ctx.jobs)
    first = res["overlay"].copy()
    panel.opacity.setValue(0)
    plain = panel.last_result["overlay"].copy()
    pic = read_image(ds.abspath(item)).pixels.permute(1, 2, 0).numpy()
    panel.show_box.setChecked(False)
    assert np.array_equal(panel.last_result["overlay"], pic)  # opacity 0, no box: the picture itself
    panel.show_box.setChecked(True)
    assert not np.array_equal(plain, pic)  # the box is drawn
    panel.opacity.setValue(80)
    panel.colormap.setCurrentText("jet")
    assert not np.array_equal(panel.last_result["overlay"], first)
    panel.threshold.setValue(90)
    assert panel.last_result["box"] == saliency_box(ref.maps[0], 0.9)
    assert len(ctx.jobs) == jobs_before
    shot = tmp_path / "saliency_panel.png"
    assert panel.grab().save(str(shot)) and shot.stat().st_size > 0
    if os.environ.get("AUGSTUDIO_SHOTS"):
        panel.grab().save(os.path.join(os.environ["AUGSTUDIO_SHOTS"], "saliency_panel.png"))

    # turning off the view averaging and multi-scale recomputes: plain vanilla gradient
    panel.multiscale.setChecked(False)
    _wait_job(qtbot, panel, lambda: panel.views.setChecked(False))
    qtbot.waitUntil(lambda: not panel.runner.busy(), timeout=10000)
    plain_ref = compute_saliency(load_model(probe_file), [read_image(ds.abspath(item))], method="vanilla")
    assert torch.allclose(panel.last_result["map"], plain_ref.maps[0], atol=1e-5)

    # a target class: the job reruns for that class
    _wait_job(qtbot, panel, lambda: panel.target.setCurrentIndex(2))
    qtbot.waitUntil(lambda: not panel.runner.busy() and panel.last_result["target"] == 1, timeout=10000)

    # model files: a missing one is reported; a TorchScript one needs the user's yes
    panel.set_model_file(tmp_path / "nope.pt")  # loads as a job: the error arrives from it
    qtbot.waitUntil(lambda: bool(panel.errors) and "model file not found" in panel.errors[-1], timeout=10000)
    ts_path = tmp_path / "m.ts"
    lm = load_model(probe_file)
    torch.jit.save(torch.jit.script(lm.module), str(ts_path), _extra_files={"augstudio.json": json.dumps(
        {"classes": lm.classes, "mean": list(lm.mean), "std": list(lm.std), "input_size": list(lm.input_size)})})
    asked = []
    panel.confirm_code = lambda p: asked.append(p) or False
    before = panel.model
    panel.set_model_file(ts_path)
    assert asked == [ts_path] and panel.model is before

    # a new panel on the same dataset finds the saved probe without training
    other = SaliencyPanel(ctx)
    other.probe_kwargs = dict(PROBE)
    other._dataset_changed(ds)
    qtbot.addWidget(other)
    assert other.model is not None and other.model.meta.get("probe_for") == str(root)
    ctx.shutdown()


def test_saliency_latest_request_wins_and_stale_maps_are_dropped(qtbot, tmp_path, samples_root, monkeypatch):
    from augstudio.core.models.loading import PROBE_ARCH, save_checkpoint
    from augstudio.core.models.networks import ProbeNet

    ckpt = save_checkpoint(tmp_path / "net.pt", ProbeNet(2, width=4, depth=1), PROBE_ARCH, ["circle", "square"],
                           mean=(0.5,) * 3, std=(0.25,) * 3, arch_kwargs={"width": 4, "depth": 1})
    ctx = AppContext(max_threads=2)
    panel = SaliencyPanel(ctx)
    qtbot.addWidget(panel)
    panel.set_model_file(ckpt)
    qtbot.waitUntil(lambda: panel.model is not None, timeout=30000)
    delivered = []
    real = panel._on_result
    monkeypatch.setattr(panel, "_on_result", lambda res: delivered.append(res) or real(res))
    picture = next((samples_root / "shapes" / "circle").glob("*.jpg"))
    panel.multiscale.setChecked(False)
    panel.set_image(picture)  # request 1 runs ...
    for method in ("smoothgrad", "gradxinput", "vanilla"):  # ... and every change supersedes the last
        panel.method.setCurrentText(method)
    panel.views.setChecked(False)
    qtbot.waitUntil(lambda: not panel.runner.busy(), timeout=30000)
    qtbot.wait(20)
    assert len(delivered) == 1 and panel.last_result is delivered[0]
    res = delivered[0]
    assert (res["method"], res["views"], res["scales"]) == ("vanilla", "none", (1.0,))
    ref = compute_saliency(panel.model, [read_image(picture)], method="vanilla")
    assert torch.allclose(res["map"], ref.maps[0], atol=1e-5)
    ctx.shutdown()
