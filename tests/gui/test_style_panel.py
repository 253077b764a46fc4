"""The style panel runs a tiny texture job through the real context: live previews, a loss curve that
matches the job's losses, the result saved and added to a style bank; cancel; a clear error for a
missing model."""

from __future__ import annotations

import numpy as np
from PIL import Image

from augstudio.core.io.images import read_image
from augstudio.gui.panels.style import StylePanel
from augstudio.gui.qt.context import AppContext


def test_style_panel_texture_job_previews_curve_save_and_bank(qtbot, tmp_path):
    from skimage import data

    src = tmp_path / "brick.png"
    Image.fromarray(data.brick()).resize((48, 48)).save(src)
    ctx = AppContext(max_threads=2)
    panel = StylePanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1000, 650)
    panel.show()

    panel.set_method("texture")
    assert not panel.content.isEnabled() and panel.style.isEnabled()
    panel.style.edit.setText(str(src))
    panel.size.setValue(32)
    panel.iterations.setValue(6)
    panel.optimizer.setCurrentText("adam")
    panel.pyramid.setValue(1)
    handle = panel.start()
    assert not panel.start_btn.isEnabled() and panel.cancel_btn.isEnabled()
    with qtbot.waitSignal(handle.ended, timeout=60000):
        pass
    assert handle.state == "done", panel.errors
    r = panel.result
    assert r.image.shape == (3, 32, 32)
    # the curve shows the job's own numbers at their iterations (progress is throttled, so some may be
    # skipped; the last one always arrives)
    xs, ys = panel.curve.getData()
    assert len(xs) >= 1 and list(xs) == panel.loss_x and xs[-1] == 6
    assert np.allclose(panel.losses, [r.losses[i] for i in panel.loss_x])
    shown = panel.image_item.image
    assert shown.shape == (32, 32, 3) and np.array_equal(shown, r.image.permute(1, 2, 0).numpy())
    assert panel.start_btn.isEnabled() and panel.save_btn.isEnabled()

    out = panel.save_result(tmp_path / "out" / "texture")
    assert out.suffix == ".png" and np.array_equal(read_image(out).pixels.numpy(), r.image.numpy())
    bank = tmp_path / "bank"
    a, b = panel.add_to_bank(bank), panel.add_to_bank(bank)
    assert a != b and sorted(p.name for p in bank.iterdir()) == sorted([a.name, b.name])
    panel.grab().save(str(tmp_path / "panel.png"))

    # cancel a long run
    panel.iterations.setValue(5000)
    handle = panel.start()
    qtbot.waitUntil(lambda: len(panel.losses) >= 1, timeout=30000)
    panel.cancel_btn.click()
    # the panel is free at once; the job stops after the iteration it is in
    assert panel.start_btn.isEnabled() and panel.status.text().startswith("cancelled")
    with qtbot.waitSignal(handle.ended, timeout=30000):
        pass
    assert handle.state == "cancelled" and panel.status.text().startswith("cancelled")

    # a missing model is refused before any work, with what to do
    panel.set_method("adain")
    panel.content.edit.setText(str(src))
    assert panel.start() is None and "adain-train" in panel.errors[-1]
    panel.model.setText(str(tmp_path / "nowhere" / "decoder.pth"))
    handle = panel.start()
    with qtbot.waitSignal(handle.ended, timeout=30000):
        pass
    assert handle.state == "failed" and "does not exist" in panel.errors[-1]

    # a weight-free randomiser is one quick step
    panel.set_method("randconv")
    handle = panel.start()
    with qtbot.waitSignal(handle.ended, timeout=30000):
        pass
    assert handle.state == "done" and panel.result.image.shape == (3, 48, 48)
    ctx.shutdown()


def test_style_panel_randconv_is_the_cli_and_the_stylize_op(qtbot, tmp_path):
    """The panel runs the core's one style dispatcher: the same pixels as `augstudio style randconv` and as
    the stylize op with its parameters drawn for the same seed."""
    import torch
    from skimage import data

    from augstudio.cli import main
    from augstudio.core.base import seeding
    from augstudio.core.methods.style.dispatch import RANDOM_STREAM
    from augstudio.core.ops.style import Stylize

    src = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).resize((64, 40)).save(src)
    ctx = AppContext(max_threads=2)
    panel = StylePanel(ctx)
    qtbot.addWidget(panel)
    panel.set_method("randconv")
    panel.content.edit.setText(str(src))
    panel.seed.setValue(5)
    panel.alpha.setValue(0.6)
    panel.max_size.setValue(32)
    handle = panel.start()
    with qtbot.waitSignal(handle.ended, timeout=30000):
        pass
    assert handle.state == "done", panel.errors
    out = tmp_path / "cli.png"
    assert main(["style", "randconv", str(src), "--out", str(out), "--seed", "5", "--alpha", "0.6",
                 "--max-size", "32"]) == 0
    pic = read_image(src)
    op = Stylize(method="randconv", bank=None, model=None, alpha=0.6, strength=0.5, max_size=32)
    want = op.apply(pic.pixels, op.sample(seeding.generator(5, stream=RANDOM_STREAM), pic.size), pic.kind)
    assert torch.equal(panel.result.image, want) and torch.equal(read_image(out).pixels, want)
    ctx.shutdown()
