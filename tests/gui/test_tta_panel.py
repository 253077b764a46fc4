"""The TTA panel on the sample wafer maps: load a model file through the panel, per-view predictions of
the shown image, and the dataset evaluation as a job, each checked against the core."""

from __future__ import annotations

import json
import shutil

import torch

from augstudio.core.base.jobs import run_job
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_image
from augstudio.core.models import loading as models
from augstudio.core.workflows.tta import classifier_from_loaded, evaluate_job, predict_one
from augstudio.core.workflows.tta_views import load_tta
from augstudio.gui.panels.tta import TTAPanel
from augstudio.gui.qt.context import AppContext


def _model():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                                  torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    return net.eval()


def test_tta_panel_views_and_evaluation(qtbot, tmp_path, samples_root):
    root = tmp_path / "wafers"
    for cls in ("Center", "Donut", "none"):
        (root / cls).mkdir(parents=True)
        for f in sorted((samples_root / "wafers" / cls).glob("*.png"))[:4]:
            shutil.copy(f, root / cls / f.name)
    net = _model()
    meta = {"classes": ["Center", "Donut", "none"], "input_mode": "onehot", "num_categories": 3,
            "mean": [0.0], "std": [1.0]}
    ts = tmp_path / "wafer.ts"
    torch.jit.save(torch.jit.script(net), str(ts), _extra_files={"augstudio.json": json.dumps(meta)})

    ctx = AppContext(max_threads=2)
    panel = TTAPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.show()
    ds = scan(root)
    ctx.set_dataset(ds)
    assert not panel.eval_btn.isEnabled()  # no model yet

    # load the model through the panel (TorchScript needs the opt-in box)
    panel.model_edit.setText(str(ts))
    with qtbot.waitSignal(ctx.job_started, timeout=5000) as started:
        panel.load_btn.click()
    with qtbot.waitSignal(started.args[0].ended, timeout=30000):
        pass
    assert panel.classifier is None and "allow" in panel.errors[-1]
    panel.allow_code.setChecked(True)
    handle = panel.load_model()
    qtbot.waitUntil(lambda: panel.classifier is not None, timeout=30000)
    assert handle.state == "done"
    assert panel.classifier.classes == meta["classes"] and panel.eval_btn.isEnabled()

    # the shown image: each d4 view with its prediction, checked against the core
    item = ds.items[5]
    ctx.set_current_item(item)
    qtbot.waitUntil(lambda: panel.last_prediction is not None and panel.last_prediction["path"].endswith(item.path),
                    timeout=30000)
    lm = models.LoadedModel(net, None, (0.0,), (1.0,), meta["classes"], "net", "onehot", 3)
    clf = classifier_from_loaded(lm, "cpu")
    want = predict_one(clf, read_image(ds.abspath(item)), load_tta("d4"))
    t = panel.views_table
    assert t.rowCount() == 8
    for i, row in enumerate(want["views"]):
        assert t.item(i, 0).text() == row["view"]
        assert t.item(i, 1).text() == row["pred"]
        assert t.item(i, 2).text() == f"{row['confidence']:.1%}"
        assert not t.item(i, 0).icon().isNull()
    assert f"{want['merged']['pred']} {want['merged']['confidence']:.1%}" in panel.merged_label.text()

    # switching the merge rule re-predicts
    panel.last_prediction = None
    panel.merge_combo.setCurrentText("vote")
    qtbot.waitUntil(lambda: panel.last_prediction is not None, timeout=30000)
    assert panel.last_prediction["merge"] == "vote"

    # the dataset evaluation as a job, with its table
    h = panel.evaluate()
    qtbot.waitUntil(lambda: panel.last_report is not None, timeout=60000)
    assert h.state == "done"
    rep = panel.last_report
    ref = run_job(evaluate_job(ds, clf, {"views": "d4", "merge": "vote"}))
    assert (rep.correct_plain, rep.correct_tta, rep.confusion_tta) == (ref.correct_plain, ref.correct_tta,
                                                                         ref.confusion_tta)
    ct = panel.class_table
    assert ct.rowCount() == 4 and ct.item(3, 0).text() == "all" and ct.item(3, 1).text() == "12"
    assert ct.item(3, 3).text() == f"{ref.accuracy_tta:.1%}"
    assert "| **all** | 12 |" in panel.report_text.toPlainText()
    panel.save_report(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["correct_tta"] == ref.correct_tta
    panel.grab().save(str(tmp_path / "tta_panel.png"))  # a real screenshot, for looking at
    assert (tmp_path / "tta_panel.png").stat().st_size > 0
    assert ctx.shutdown(5000)


def test_tta_tab_builds_in_main_window(make_window, samples_root):
    win = make_window(samples_root / "wafers")
    host = next(h for h in win.panel_hosts if h.title == "TTA")
    host.build()
    assert host.error is None and isinstance(host.panel, TTAPanel)
    assert host.panel.eval_btn.isEnabled() is False  # no model yet
    host.panel.model_edit.setText("")
    assert host.panel.load_model() is None and "enter a model" in host.panel.errors[-1]
