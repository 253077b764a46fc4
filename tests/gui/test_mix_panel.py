"""The mix panel on the bundled shapes: a pair, each method, the lambda slider and reroll, checked against
the core's mix_pair, plus a screenshot."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from augstudio.core.engine.mixing import mix_pair, mixable
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_image
from augstudio.gui.panels.mix import MixPanel
from augstudio.gui.qt.context import AppContext


def _pixels(qimg):
    from PySide6.QtGui import QImage

    img = qimg.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.bytesPerLine() * h)
    return arr.reshape(h, img.bytesPerLine())[:, :3 * w].reshape(h, w, 3)


def _run(qtbot, panel, action):
    with qtbot.waitSignal(panel.ctx.job_started, timeout=5000) as started:
        action()
    handle = started.args[0]
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=60000)
    qtbot.waitUntil(lambda: panel.last_result is not None and not panel.runner.busy(), timeout=10000)
    return panel.last_result


def test_mix_panel_methods_slider_reroll(qtbot, tmp_path, samples_root):
    root = tmp_path / "shapes"
    for cls in ("circle", "star"):
        (root / cls).mkdir(parents=True)
        for f in sorted((samples_root / "shapes" / cls).glob("*.jpg"))[:2]:
            shutil.copy(f, root / cls / f.name)
    ctx = AppContext(max_threads=2)
    panel = MixPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1200, 560)
    panel.show()
    ds = scan(root)
    ctx.set_dataset(ds)
    a, b = root / "circle" / "circle_000.jpg", root / "star" / "star_000.jpg"
    xa, xb = mixable(read_image(a)), mixable(read_image(b))

    # PuzzleMix on a fixed 8x8 grid with lambda 0.5: the same as the core
    panel.method.setCurrentText("puzzlemix")
    blocks = panel.form.fields["block_num"].parts[0]  # the form is made from PuzzleMix's Params
    blocks.setCurrentIndex(blocks.findData(8))
    panel.lam_slider.setValue(50)
    res = _run(qtbot, panel, lambda: panel.fix_lam.setChecked(True) or panel.set_pair(a, b))
    ref = mix_pair(xa, xb, "puzzlemix", lam=0.5, seed=0, block_num=8)
    assert res["weights"][0] == pytest.approx(ref["weights"][0])
    torch.testing.assert_close(res["mixed"], ref["mixed"])
    for key in ("sal_a", "sal_b", "mask", "transported_a", "transported_b", "mixed"):
        assert not panel.view_labels[key].pixmap().isNull(), key
    got = _pixels(res["images"]["mixed"]).astype(int)
    want = (ref["mixed"].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - want).max() <= 1
    assert "circle" in panel.weights_label.text() and "star" in panel.weights_label.text()
    (tmp_path / "shots").mkdir()
    panel.grab().save(str(tmp_path / "shots" / "mix_panel.png"))

    # Mixup with the slider at 0.3: weights follow lambda exactly
    panel.method.setCurrentText("mixup")
    res = _run(qtbot, panel, lambda: panel.lam_slider.setValue(30))
    assert res["weights"] == pytest.approx((0.3, 0.7))
    torch.testing.assert_close(res["mixed"], 0.3 * xa + 0.7 * xb)

    # CutMix with a drawn lambda; reroll draws another box
    panel.fix_lam.blockSignals(True)
    panel.fix_lam.setChecked(False)
    panel.fix_lam.blockSignals(False)
    panel.method.setCurrentText("cutmix")
    first = _run(qtbot, panel, panel.compute)
    second = _run(qtbot, panel, panel.reroll)
    assert first["params"]["box"] != second["params"]["box"]
    ref = mix_pair(xa, xb, "cutmix", seed=panel.seed)
    assert second["weights"][0] == pytest.approx(ref["weights"][0])

    # a random pair from the dataset
    res = _run(qtbot, panel, panel.random_pair)
    assert panel.path_a != panel.path_b and panel.path_a.parent.parent == root
    assert ctx.shutdown()


def test_mix_form_is_made_from_the_ops_param_declarations(qtbot):
    from augstudio.core.ops.registry import get_batch_op
    from augstudio.gui.widgets.params import ParamField

    ctx = AppContext(max_threads=2)
    panel = MixPanel(ctx)
    qtbot.addWidget(panel)
    params = get_batch_op("puzzlemix").params
    assert [p.name for p in params] == list(panel.form.fields)  # n_labels and neigh_size included
    for p in params:
        field = panel.form.fields[p.name]
        assert isinstance(field, ParamField) and field.param is p
    assert panel.form.values == {p.name: None if p.default is None else p.validate(p.default) for p in params}
    # editing a field is what the mix gets
    panel.form.fields["n_labels"].parts[0].spin.setValue(2)
    panel.form.fields["alpha"].parts[0].spin.setValue(0.4)
    panel.form.fields["transport"].parts[0].setChecked(False)
    values = panel.settings()["values"]
    assert values["n_labels"] == 2 and values["alpha"] == pytest.approx(0.4) and values["transport"] is False
    assert "model" not in values  # the saliency model goes through the model-loading job, not to the op
    # another method: its own declarations; the shared alpha keeps its value
    panel.method.setCurrentText("mixup")
    assert list(panel.form.fields) == [p.name for p in get_batch_op("mixup").params]
    assert "alpha" in panel.form.fields and panel.settings()["values"]["alpha"] == pytest.approx(0.4)
    assert ctx.shutdown()


def test_mix_latest_request_wins_and_stale_results_are_dropped(qtbot, samples_root, monkeypatch):
    ctx = AppContext(max_threads=2)
    panel = MixPanel(ctx)
    qtbot.addWidget(panel)
    shown = []
    real_show = panel._show
    monkeypatch.setattr(panel, "_show", lambda res: shown.append(res) or real_show(res))
    started = []
    ctx.job_started.connect(started.append)
    panel.method.setCurrentText("cutmix")
    a, b = sorted((samples_root / "shapes" / "circle").glob("*.jpg"))[:2]
    panel.set_pair(a, b)  # request 1 runs ...
    for _ in range(4):
        panel.reroll()  # ... and each reroll supersedes the one before
    qtbot.waitUntil(lambda: not panel.runner.busy(), timeout=30000)
    qtbot.wait(20)
    assert len(shown) == 1 and shown[0]["settings"]["seed"] == panel.seed == 4
    assert panel.last_result is shown[0]
    assert len(started) == 2  # the first (cancelled or dropped) and the newest; the rest never ran
    xa, xb = mixable(read_image(a)), mixable(read_image(b))
    assert shown[0]["params"]["box"] == mix_pair(xa, xb, "cutmix", seed=4)["params"]["box"]
    assert ctx.shutdown()
