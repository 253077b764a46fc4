"""The Evaluate panel: runs the experiment job through the context, shows the core's table and plots, the
same numbers as the core job; cancel; save the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base.jobs import run_job
from augstudio.core.engine.recipe import Recipe
from augstudio.core.io.dataset import scan
from augstudio.core.workflows.evaluate import NO_AUG, evaluate_job
from augstudio.core.workflows.report import table_rows

torch.set_num_threads(1)


@pytest.fixture
def digits(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path / "digits"
    seen = dict.fromkeys(range(4), 0)
    for img, y in zip(d.images, d.target):
        if y > 3 or seen[y] >= 10:
            continue
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).round().astype(np.uint8), "L").save(root / str(y) / f"{seen[y]}.png")
        seen[y] += 1
    return root


@pytest.fixture
def panel(qtbot, digits, tmp_path):
    from augstudio.gui.panels.evaluate import EvaluatePanel
    from augstudio.gui.qt.context import AppContext

    ctx = AppContext()
    ctx.set_dataset(scan(digits))
    ctx.set_recipe(Recipe.from_dict({"seed": 2, "steps": [{"op": "rotate", "degrees": 15}]}))
    p = EvaluatePanel(ctx)
    qtbot.addWidget(p)
    p.resize(1300, 600)
    p.show()
    p.epochs.setValue(2)
    p.seeds.setValue(2)
    p.image_size.setValue(8)
    yield p
    ctx.shutdown(5000)


def test_run_shows_the_core_numbers_table_and_plots(qtbot, panel, digits, tmp_path):
    flip = tmp_path / "flip.yaml"
    flip.write_text("steps:\n  - {op: vflip}\n")
    panel.add_recipe_file(flip)
    assert panel.recipe_list.count() >= 2
    handle = panel.run()
    assert handle is not None and not panel.run_btn.isEnabled()
    qtbot.waitUntil(lambda: panel.result is not None or bool(panel.errors), timeout=120000)
    assert not panel.errors
    res = panel.result
    assert [a["name"] for a in res["arms"]] == [NO_AUG, "current recipe", "flip"]
    # the same numbers as the core job run here with the same settings
    ref = run_job(evaluate_job(digits, [panel.ctx.recipe(), str(flip)], epochs=2, seeds=2, image_size=8,
                               recipe_names=["current recipe", "flip"]))
    for a, b in zip(res["arms"], ref["arms"]):
        np.testing.assert_allclose(a["runs"][1]["probs"], b["runs"][1]["probs"], atol=1e-6)
    # the table is the core's table
    rows = table_rows(res)
    assert panel.table.rowCount() == 3 and panel.table.columnCount() == len(rows[0])
    for r in range(3):
        assert [panel.table.item(r, c).text() for c in range(len(rows[0]))] == rows[r + 1]
    # plots: one curve per arm; a bar per non-empty reliability bin; one bar series per arm per class
    curves = [i for i in panel.curves.getPlotItem().listDataItems()]
    assert len(curves) == 3
    ys = curves[0].getData()[1]
    np.testing.assert_allclose(ys, np.mean([r["curves"]["val_accuracy"] for r in res["arms"][0]["runs"]], 0))
    qtbot.waitUntil(lambda: panel.run_btn.isEnabled(), timeout=5000)
    panel.table.selectRow(2)
    assert panel.arm_combo.currentIndex() == 2
    bars = [i for i in panel.reliability.getPlotItem().items if i.__class__.__name__ == "BarGraphItem"]
    assert len(bars) == 1
    from augstudio.core.workflows import metrics
    from augstudio.core.workflows.report import pooled_predictions

    probs, labels = pooled_predictions(res, res["arms"][2])
    assert len(bars[0].opts["x"]) == sum(1 for n in metrics.reliability(probs, labels).counts if n)
    pc = [i for i in panel.per_class.getPlotItem().items if i.__class__.__name__ == "BarGraphItem"]
    assert len(pc) == 3 and all(len(b.opts["x"]) == 4 for b in pc)
    panel.plots.setCurrentIndex(1)
    panel.grab().save(str(tmp_path / "evaluate_panel.png"))
    # save the report from the panel
    out = panel.save_report(tmp_path / "report")
    assert (out / "report.html").is_file() and (out / "results.json").is_file()


def test_cancel_stops_the_job_and_reenables_run(qtbot, panel):
    panel.epochs.setValue(500)
    handle = panel.run()
    qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=60000)
    with qtbot.waitSignal(handle.ended, timeout=30000):
        panel.cancel_btn.click()
    assert panel.result is None
    assert panel.run_btn.isEnabled() and not panel.cancel_btn.isEnabled()
    assert "ancel" in panel.status.text()


def test_no_dataset_is_explained(qtbot):
    from augstudio.gui.panels.evaluate import EvaluatePanel
    from augstudio.gui.qt.context import AppContext

    ctx = AppContext()
    p = EvaluatePanel(ctx)
    qtbot.addWidget(p)
    assert p.run() is None
    assert "labelled dataset" in p.status.text()
