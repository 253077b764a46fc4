"""The TTA panel: for the shown image, every test-time view with the model's prediction and the merged
prediction; for the open dataset, the with/without-TTA evaluation as a job, shown as a table.

The model is a checkpoint / TorchScript file, a torchvision name, or ``probe`` (trained on the open
dataset), loaded by the shared model-loading job (``ctx.models``). The dataset evaluation is a job; the
per-view predictions of the shown image run on a latest-wins runner. QImages are built in the worker,
QPixmaps here on the GUI thread.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError, ModelError
from augstudio.core.io.images import atomic_write_bytes, read_image
from augstudio.core.workflows import tta as T
from augstudio.core.workflows import tta_views as V
from augstudio.gui.qt.images import to_qimage
from augstudio.gui.qt.models import PROBE, ModelRequest
from augstudio.gui.qt.workers import error_message

THUMB = 72


class TTAPanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.classifier: T.Classifier | None = None
        self.recipe_file: str | None = None
        self.last_prediction: dict | None = None
        self.last_report: T.TTAReport | None = None
        self.errors: list[str] = []
        self._runner = ctx.latest()
        self._eval_handle = None
        self.trained_on: str | None = None  # the folder a probe model was trained on

        # -- model and recipe ----------------------------------------------------------------------
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("model.pt, resnet18, or probe")
        self.browse_btn = QPushButton("Browse…")
        self.load_btn = QPushButton("Load model")
        self.allow_code = QCheckBox("allow TorchScript (runs code)")
        self.model_status = QLabel("no model loaded")
        self.model_status.setWordWrap(True)
        mrow = QHBoxLayout()
        mrow.addWidget(self.model_edit, 1)
        mrow.addWidget(self.browse_btn)
        mrow.addWidget(self.load_btn)

        self.views_combo = QComboBox()
        for name, help_ in V.PRESET_HELP.items():
            self.views_combo.addItem(f"{name} — {help_}", name)
        self.views_combo.addItem("five crops (87.5%)", {"five_crop": 0.875})
        self.views_combo.addItem("ten crops (87.5%, AlexNet / ResNet)", {"ten_crop": 0.875})
        self.views_combo.addItem("zoom 0.9 / 1.0 / 1.1", {"scales": [0.9, 1.0, 1.1]})
        self.views_combo.setCurrentIndex(self.views_combo.findData("d4"))
        self.recipe_btn = QPushButton("TTA file…")
        self.merge_combo = QComboBox()
        self.merge_combo.addItems(list(V.MERGES))
        self.temp_spin = QDoubleSpinBox()
        self.temp_spin.setRange(0.05, 10.0)
        self.temp_spin.setSingleStep(0.05)
        self.temp_spin.setValue(0.5)
        self.temp_spin.setEnabled(False)
        vrow = QHBoxLayout()
        vrow.addWidget(self.views_combo, 1)
        vrow.addWidget(self.recipe_btn)

        form = QFormLayout()
        form.addRow("Model", mrow)
        form.addRow("", self.allow_code)
        form.addRow("", self.model_status)
        form.addRow("Views", vrow)
        form.addRow("Merge", self.merge_combo)
        form.addRow("Temperature", self.temp_spin)
        top = QGroupBox("Model and test-time views")
        top.setLayout(form)

        # -- the shown image ---------------------------------------------------------------------------
        self.predict_btn = QPushButton("Predict shown image")
        self.views_table = QTableWidget(0, 3)
        self.views_table.setHorizontalHeaderLabels(["view", "prediction", "confidence"])
        self.views_table.setIconSize(QSize(THUMB, THUMB))
        self.views_table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.views_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.views_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.merged_label = QLabel("—")
        self.merged_label.setWordWrap(True)
        self.merged_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        img_box = QGroupBox("Shown image")
        il = QVBoxLayout(img_box)
        il.addWidget(self.predict_btn)
        il.addWidget(self.views_table, 1)
        il.addWidget(self.merged_label)

        # -- the dataset ---------------------------------------------------------------------------------
        self.eval_btn = QPushButton("Evaluate dataset")
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e0b050;")
        self.warning.hide()
        self.save_btn = QPushButton("Save report…")
        self.save_btn.setEnabled(False)
        self.class_table = QTableWidget(0, 4)
        self.class_table.setHorizontalHeaderLabels(["class", "images", "without TTA", "with TTA"])
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.class_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.report_text = QPlainTextEdit()
        self.report_text.setReadOnly(True)
        self.report_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.report_text.setStyleSheet("font-family: monospace;")
        ds_box = QGroupBox("Dataset")
        dl = QVBoxLayout(ds_box)
        brow = QHBoxLayout()
        brow.addWidget(self.eval_btn)
        brow.addWidget(self.save_btn)
        brow.addStretch(1)
        dl.addLayout(brow)
        dl.addWidget(self.warning)
        dl.addWidget(self.class_table, 1)
        dl.addWidget(self.report_text, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(img_box)
        split.addWidget(ds_box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(top)
        lay.addWidget(split, 1)

        self.browse_btn.clicked.connect(self._browse_model)
        self.load_btn.clicked.connect(self.load_model)
        self.model_edit.returnPressed.connect(self.load_model)
        self.recipe_btn.clicked.connect(self._browse_recipe)
        self.views_combo.currentIndexChanged.connect(self._recipe_changed)
        self.merge_combo.currentTextChanged.connect(self._recipe_changed)
        self.temp_spin.valueChanged.connect(self._recipe_changed)
        self.predict_btn.clicked.connect(self.predict_current)
        self.eval_btn.clicked.connect(self.evaluate)
        self.save_btn.clicked.connect(self._save_report)
        ctx.current_item_changed.connect(lambda _item: self.predict_current())
        ctx.dataset_changed.connect(lambda _ds: self._update_buttons())
        self._update_buttons()

    # -- state ---------------------------------------------------------------------------------------
    def tta_recipe(self) -> V.TTARecipe:
        """The TTA recipe the controls describe (a loaded file's views, or the chosen preset)."""
        if self.recipe_file:
            base = V.load_tta(self.recipe_file)
            views = base.views_spec
        else:
            data = self.views_combo.currentData()
            views = data if isinstance(data, str) else [data]
        return V.TTARecipe.from_dict({"views": views, "merge": self.merge_combo.currentText(),
                                      "temperature": float(self.temp_spin.value())})

    def set_classifier(self, clf: T.Classifier | None) -> None:
        self.classifier = clf
        if clf is None:
            self.model_status.setText("no model loaded")
        else:
            self.model_status.setText(f"{clf.name}: {len(clf.classes)} classes ({', '.join(clf.classes[:8])}"
                                      f"{' …' if len(clf.classes) > 8 else ''}) on {clf.device}")
        self._update_buttons()
        self.predict_current()

    def _update_buttons(self) -> None:
        has = self.classifier is not None
        self.predict_btn.setEnabled(has)
        ds = self.ctx.dataset()
        self.eval_btn.setEnabled(has and ds is not None and ds.layout == "imagefolder")
        self.check_data()

    def check_data(self) -> str:
        """Warn when the dataset to evaluate on is the one the model (a probe) was trained on."""
        ds = self.ctx.dataset()
        text = ""
        if ds is not None and self.trained_on is not None and self.classifier is not None:
            try:
                same = Path(self.trained_on).resolve() == Path(ds.root).resolve()
            except OSError:
                same = False
            if same:
                text = ("⚠ The probe was trained on these images: scores here are mostly training accuracy "
                        "(near 100%) and say little about TTA. Evaluate on images the model has not seen "
                        "(a held-out folder), or load a model trained elsewhere.")
        self.warning.setText(text)
        self.warning.setVisible(bool(text))
        return text

    def _fail(self, error: BaseException | str) -> None:
        msg = error if isinstance(error, str) else error_message(error)
        self.errors.append(msg)
        self.merged_label.setText(f"<span style='color:#e06c75'>{msg}</span>")

    def _recipe_changed(self, *_):
        self.temp_spin.setEnabled(self.merge_combo.currentText() == "sharpen")
        if self.sender() is self.views_combo:
            self.recipe_file = None
        self.predict_current()

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Models (*.pt *.pth *.ckpt *.ts *.jit);;All (*)")
        if path:
            self.model_edit.setText(path)
            self.load_model()

    def _browse_recipe(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "TTA recipe", "", "TTA recipes (*.yaml *.yml *.json)")
        if path:
            self.load_recipe_file(path)

    def load_recipe_file(self, path) -> bool:
        try:
            r = V.load_tta(str(path))
        except AugstudioError as e:
            self._fail(e)
            return False
        self.recipe_file = str(path)
        self.merge_combo.blockSignals(True)
        self.merge_combo.setCurrentText(r.merge)
        self.merge_combo.blockSignals(False)
        self.temp_spin.setValue(r.temperature)
        self.model_status.setToolTip(f"TTA recipe: {path}")
        self.predict_current()
        return True

    # -- jobs ----------------------------------------------------------------------------------------
    def load_model(self):
        spec = self.model_edit.text().strip()
        if not spec:
            self._fail("enter a model: a checkpoint file, a torchvision name, or probe")
            return None
        if spec == PROBE:
            ds = self.ctx.dataset()
            request = ModelRequest.probe_for(ds.root) if ds is not None else ModelRequest(PROBE)
        else:
            request = ModelRequest(spec, allow_code=self.allow_code.isChecked())
        self.model_status.setText(f"loading {spec} …")
        return self.ctx.models.load(request, self._loaded, self._load_failed)

    def _loaded(self, lm) -> None:
        self.trained_on = lm.meta.get("probe_for")
        try:
            self.set_classifier(T.classifier_from_loaded(lm, self.ctx.device()))
        except ModelError as e:
            self._load_failed(e)

    def _load_failed(self, error: BaseException) -> None:
        self.model_status.setText("no model loaded")
        self._fail(error)

    def predict_current(self):
        """Predict every view of the shown image off the GUI thread (a newer request supersedes older ones)."""
        path = self.ctx.current_path()
        clf = self.classifier
        if clf is None or path is None:
            return None
        try:
            tta = self.tta_recipe()
        except AugstudioError as e:
            self._fail(e)
            return None

        def work(token):
            pic = read_image(path)
            token.check("prediction")
            res = T.predict_one(clf, pic, tta)
            res["thumbs"] = [to_qimage(v.apply(pic)) for v in tta.views]
            res["path"] = str(path)
            return res

        # quick and frequent (every image the user steps to): a private latest-wins runner, not the Jobs list
        return self._runner.submit(work, self._show_prediction, self._fail)

    def _show_prediction(self, res: dict) -> None:
        self.last_prediction = res
        t = self.views_table
        t.setRowCount(len(res["views"]))
        for i, (row, img) in enumerate(zip(res["views"], res["thumbs"])):
            pm = QPixmap.fromImage(img).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.FastTransformation)
            it = QTableWidgetItem(row["view"])
            it.setIcon(pm)
            t.setItem(i, 0, it)
            t.setItem(i, 1, QTableWidgetItem(row["pred"]))
            t.setItem(i, 2, QTableWidgetItem(f"{row['confidence']:.1%}"))
        m, p = res["merged"], res["plain"]
        agree = sum(r["pred"] == m["pred"] for r in res["views"])
        self.merged_label.setText(
            f"<b>merged ({res['merge']}): {m['pred']} {m['confidence']:.1%}</b> — {agree} of {len(res['views'])} "
            f"views agree; without TTA: {p['pred']} {p['confidence']:.1%}")

    def evaluate(self):
        ds = self.ctx.dataset()
        clf = self.classifier
        if clf is None or ds is None:
            self._fail("load a model and open a labelled dataset first")
            return None
        try:
            tta = self.tta_recipe()
        except AugstudioError as e:
            self._fail(e)
            return None
        self.report_text.setPlainText("evaluating …")
        self._eval_handle = self.ctx.run_job(
            f"TTA: evaluate {Path(ds.root).name}",
            lambda token: T.evaluate_job(ds, clf, tta, cancel=token),
            on_result=self.show_report, on_error=self._fail)
        return self._eval_handle

    def show_report(self, rep: T.TTAReport) -> None:
        self.last_report = rep
        t = self.class_table
        rows = [(c, rep.per_class[c]) for c in rep.classes if c in rep.per_class]
        t.setRowCount(len(rows) + 1)
        for i, (c, pc) in enumerate(rows + [("all", {"n": rep.n, "plain": rep.accuracy_plain,
                                                      "tta": rep.accuracy_tta})]):
            vals = [c, str(pc["n"]), f"{pc['plain']:.1%}", f"{pc['tta']:.1%}"]
            for j, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if j == 3 and pc["tta"] != pc["plain"]:
                    it.setForeground(QColor("#1a7f37") if pc["tta"] > pc["plain"] else QColor("#c0392b"))
                t.setItem(i, j, it)
        self.report_text.setPlainText(rep.table())
        self.save_btn.setEnabled(True)

    def _save_report(self) -> None:
        if self.last_report is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save TTA report", "tta_report.json", "JSON (*.json)")
        if path:
            self.save_report(path)

    def save_report(self, path) -> None:
        atomic_write_bytes(path, (json.dumps(self.last_report.to_dict(), indent=1) + "\n").encode())
