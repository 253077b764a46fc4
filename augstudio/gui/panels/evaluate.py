"""The Evaluate panel: "does this recipe help?". Pick recipes (the one being edited, recent and other saved
files), train with and without each of them on the open dataset as a job (progress, ETA and cancel in the
Jobs panel; live validation curves here), then show the table next to the plots: validation accuracy
per epoch, the reliability diagram of the chosen arm and per-class accuracy. "Save report…" writes the
same folder as ``augstudio evaluate --report``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.core.workflows import metrics
from augstudio.core.workflows.evaluate import evaluate_job
from augstudio.core.workflows.report import COLORS, pooled_predictions, table_rows, write_report
from augstudio.gui.qt.workers import error_message

pg.setConfigOptions(imageAxisOrder="row-major")
CURRENT = "<current>"
MIN_VAL_IMAGES = 30  # below this a validation accuracy moves by more than 3 points per image


def validation_size(counts: dict, val_fraction: float) -> int:
    """How many images the stratified split puts in validation (``evaluate.stratified_split``'s rule:
    round(n * f) per class, at least one and never all of a class of two or more)."""
    total = 0
    for n in counts.values():
        if n >= 2:
            total += min(max(int(round(n * val_fraction)), 1), n - 1)
    return total


def small_data_warning(counts: dict, val_fraction: float) -> str:
    """A warning when the validation split is too small for the comparison to mean much, else ""."""
    n_val = validation_size(counts, val_fraction)
    n = sum(counts.values())
    if n_val >= MIN_VAL_IMAGES:
        return ""
    step = 100.0 / max(1, n_val)
    return (f"⚠ Only {n_val} validation image{'s' * (n_val != 1)} ({val_fraction:.0%} of {n}): one image moves "
            f"accuracy by {step:.0f} points, so differences between recipes are mostly noise. Use a folder "
            f"with more images (≥ {MIN_VAL_IMAGES} in validation) or a larger validation share.")


def _pen(i: int, width: int = 2):
    return pg.mkPen(COLORS[i % len(COLORS)], width=width)


def _brush(i: int):
    return pg.mkBrush(*COLORS[i % len(COLORS)], 200)


class EvaluatePanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.result: dict | None = None
        self.errors: list[str] = []
        self.handle = None
        self._live: dict[tuple[str, int], list[float]] = {}

        # -- recipes ------------------------------------------------------------------------------------
        self.recipe_list = QListWidget()
        self.recipe_list.setToolTip("Checked recipes are compared with no augmentation (always included)")
        self.add_btn = QPushButton("Add recipe file…")
        self.add_btn.clicked.connect(self._browse_recipe)
        rbox = QGroupBox("Recipes (no augmentation is always an arm)")
        rl = QVBoxLayout(rbox)
        rl.addWidget(self.recipe_list, 1)
        rl.addWidget(self.add_btn)
        self._fill_recipes()

        # -- settings ------------------------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(["probe", "resnet18", "mobilenet_v3_small"])
        self.model_combo.setToolTip("'probe' (a small CNN) or a torchvision architecture, trained from scratch")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 50)
        self.seeds.setValue(3)
        self.seeds.setToolTip("each arm is trained once per seed; the comparison is paired across seeds")
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.05, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 1024)
        self.image_size.setSpecialValueText("auto")
        self.image_size.setValue(0)
        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Epochs", self.epochs)
        form.addRow("Seeds", self.seeds)
        form.addRow("Validation share", self.val_fraction)
        form.addRow("Input size", self.image_size)

        self.run_btn = QPushButton("Run experiment")
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.save_btn = QPushButton("Save report…")
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(lambda: self.save_report())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Open a labelled dataset (one folder per class), pick recipes, then run.")
        self.status.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e0b050;")
        self.warning.hide()
        brow = QHBoxLayout()
        brow.addWidget(self.run_btn)
        brow.addWidget(self.cancel_btn)
        brow.addWidget(self.save_btn)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(rbox, 1)
        ll.addLayout(form)
        ll.addLayout(brow)
        ll.addWidget(self.progress)
        ll.addWidget(self.warning)
        ll.addWidget(self.status)

        # -- results: table | plots --------------------------------------------------------------------
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._on_row)

        self.curves = pg.PlotWidget(title="validation accuracy per epoch")
        self.curves.setLabel("bottom", "epoch")
        self.curves.setYRange(0, 1)
        self.curves.addLegend(offset=(-10, 10))
        self.reliability = pg.PlotWidget(title="reliability diagram")
        self.reliability.setLabel("bottom", "confidence")
        self.reliability.setLabel("left", "accuracy")
        self.reliability.setXRange(0, 1)
        self.reliability.setYRange(0, 1)
        self.per_class = pg.PlotWidget(title="per-class accuracy")
        self.per_class.setYRange(0, 1)
        self.per_class.addLegend(offset=(-10, 10))
        self.arm_combo = QComboBox()
        self.arm_combo.currentIndexChanged.connect(lambda _i: self._draw_reliability())
        relw = QWidget()
        rv = QVBoxLayout(relw)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.arm_combo)
        rv.addWidget(self.reliability, 1)
        self.plots = QTabWidget()
        self.plots.addTab(self.curves, "Curves")
        self.plots.addTab(relw, "Reliability")
        self.plots.addTab(self.per_class, "Per class")

        # the table above the plots: it gets the full width, so the verdict column is read without scrolling
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.table)
        results.addWidget(self.plots)
        results.setSizes([170, 430])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(True)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(results)
        split.setSizes([280, 1000])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self.val_fraction.valueChanged.connect(lambda _v: self.check_data())
        ctx.dataset_changed.connect(lambda _d: self.check_data())
        self.check_data()

    def check_data(self) -> str:
        """Warn (before any training) when the open dataset's validation split is too small."""
        ds = self.ctx.dataset()
        text = small_data_warning(ds.counts(), self.val_fraction.value()) if ds is not None and len(ds) else ""
        self.warning.setText(text)
        self.warning.setVisible(bool(text))
        return text

    # -- recipes ------------------------------------------------------------------------------------------
    def _fill_recipes(self) -> None:
        self.recipe_list.clear()
        item = QListWidgetItem("current recipe (chain editor)")
        item.setData(Qt.ItemDataRole.UserRole, CURRENT)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.recipe_list.addItem(item)
        for p in self.ctx.recent_recipes():
            if Path(p).is_file():
                self.add_recipe_file(p, checked=False)

    def add_recipe_file(self, path, checked: bool = True) -> None:
        path = str(path)
        for i in range(self.recipe_list.count()):
            if self.recipe_list.item(i).data(Qt.ItemDataRole.UserRole) == path:
                self.recipe_list.item(i).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
                return
        item = QListWidgetItem(Path(path).name)
        item.setToolTip(path)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.recipe_list.addItem(item)

    def _browse_recipe(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Recipe files", "", "Recipes (*.yaml *.yml *.json)")
        for p in paths:
            self.add_recipe_file(p)

    def set_current_checked(self, on: bool) -> None:
        self.recipe_list.item(0).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def chosen_recipes(self) -> tuple[list, list[str]]:
        """(recipes, names) for the checked rows; the current recipe is copied now, on the GUI thread."""
        recipes, names = [], []
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            if it.checkState() != Qt.CheckState.Checked:
                continue
            key = it.data(Qt.ItemDataRole.UserRole)
            if key == CURRENT:
                rec = self.ctx.recipe()
                if not rec.steps and not rec.batch:
                    continue  # an empty chain is "no augmentation", which is always an arm
                recipes.append(rec.copy())
                names.append("current recipe")
            else:
                recipes.append(key)
                names.append(Path(key).stem)
        return recipes, names

    # -- the job ------------------------------------------------------------------------------------------
    def run(self):
        ds = self.ctx.dataset()
        if ds is None:
            self._fail("Open a labelled dataset first (one folder per class).")
            return None
        recipes, names = self.chosen_recipes()
        seen: set[str] = {"no augmentation"}
        unique = []
        for n in names:
            base, k = n, 2
            while n in seen:
                n, k = f"{base} ({k})", k + 1
            seen.add(n)
            unique.append(n)
        params = dict(model=self.model_combo.currentText().strip() or "probe", epochs=self.epochs.value(),
                      seeds=self.seeds.value(), val_fraction=self.val_fraction.value(),
                      image_size=self.image_size.value() or None, device=self.ctx.device())
        root = ds.root

        def make_job(token):
            return evaluate_job(root, recipes, token=token, recipe_names=unique, **params)

        self.result = None
        self._live.clear()
        self.curves.clear()
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.save_btn.setEnabled(False)
        self.status.setText(f"Training {1 + len(recipes)} arm(s) × {params['seeds']} seed(s)…")
        self.handle = self.ctx.run_job(f"Evaluate {len(recipes)} recipe(s) on {Path(root).name}", make_job,
                                       on_result=self._on_result, on_progress=self._on_progress,
                                       on_error=self._fail)
        self.handle.ended.connect(self._on_ended)
        if hasattr(self.handle, "cancelled"):
            self.handle.cancelled.connect(lambda msg: self.status.setText(f"Cancelled ({msg})."))
        return self.handle

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _on_progress(self, p) -> None:
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        if p.message:
            self.status.setText(p.message)
        prev = p.preview
        if isinstance(prev, dict) and "curves" in prev:
            self._live[(prev["arm"], prev["seed"])] = list(prev["curves"]["val_accuracy"])
            self._draw_live()

    def _draw_live(self) -> None:
        self.curves.clear()
        arms = list(dict.fromkeys(a for a, _ in self._live))
        for (arm, _seed), ys in self._live.items():
            self.curves.plot(list(range(1, len(ys) + 1)), ys, pen=_pen(arms.index(arm), 1))

    def _on_result(self, result) -> None:
        self.result = result
        self.show_result(result)
        n = len(result.get("problems", []))
        extra = f"; {n} item(s) skipped (see the report)" if n else ""
        self.status.setText(f"Done in {result['seconds']:.0f} s{extra}.")
        self.save_btn.setEnabled(True)

    def _on_ended(self) -> None:
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _fail(self, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else error_message(error)
        self.errors.append(message)
        self.status.setText(message)

    # -- showing a result ---------------------------------------------------------------------------------
    def show_result(self, result: dict) -> None:
        rows = table_rows(result)
        self.table.clear()
        self.table.setColumnCount(len(rows[0]))
        self.table.setRowCount(len(rows) - 1)
        self.table.setHorizontalHeaderLabels(rows[0])
        for r, row in enumerate(rows[1:]):
            for c, cell in enumerate(row):
                item = QTableWidgetItem(cell)
                if c == 0:
                    item.setForeground(pg.mkColor(COLORS[r % len(COLORS)]))
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(self.table.columnCount() - 1, QHeaderView.ResizeMode.Stretch)  # the verdict
        self.table.resizeRowsToContents()
        self.arm_combo.blockSignals(True)
        self.arm_combo.clear()
        self.arm_combo.addItems([a["name"] for a in result["arms"]])
        self.arm_combo.blockSignals(False)
        self._draw_curves()
        self._draw_reliability()
        self._draw_per_class()

    def _on_row(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.arm_combo.setCurrentIndex(min(rows))

    def _draw_curves(self) -> None:
        self.curves.clear()
        for i, arm in enumerate(self.result["arms"]):
            runs = [r["curves"]["val_accuracy"] for r in arm["runs"]]
            n = min(len(c) for c in runs)
            ys = np.nanmean(np.array([c[:n] for c in runs], dtype=float), axis=0)
            self.curves.plot(list(range(1, n + 1)), ys.tolist(), pen=_pen(i), symbol="o", symbolSize=5,
                             symbolBrush=_brush(i), name=arm["name"])

    def _draw_reliability(self) -> None:
        self.reliability.clear()
        if self.result is None:
            return
        i = max(0, self.arm_combo.currentIndex())
        arm = self.result["arms"][i]
        probs, labels = pooled_predictions(self.result, arm)
        r = metrics.reliability(probs, labels)
        e = metrics.ece(probs, labels)
        width = r.edges[1] - r.edges[0]
        xs = [(r.edges[k] + r.edges[k + 1]) / 2 for k in range(len(r.counts)) if r.counts[k]]
        hs = [a for a in r.accuracy if a is not None]
        if xs:
            self.reliability.addItem(pg.BarGraphItem(x=xs, height=hs, width=width * 0.9, brush=_brush(i)))
            confs = [c for c in r.confidence if c is not None]
            self.reliability.plot(xs, confs, pen=None, symbol="t", symbolBrush=(214, 39, 40), symbolSize=7)
        self.reliability.plot([0, 1], [0, 1], pen=pg.mkPen((60, 60, 60), style=Qt.PenStyle.DashLine))
        self.reliability.setTitle(f"{arm['name']}: ECE {e:.3f} ({sum(r.counts)} predictions)")

    def _draw_per_class(self) -> None:
        self.per_class.clear()
        classes = self.result["classes"]
        arms = self.result["arms"]
        m = len(arms)
        w = 0.8 / m
        for j, arm in enumerate(arms):
            vals = arm["summary"]["per_class_accuracy"]
            xs = [c - 0.4 + w * (j + 0.5) for c in range(len(classes))]
            hs = [0.0 if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in vals]
            self.per_class.addItem(pg.BarGraphItem(x=xs, height=hs, width=w * 0.95, brush=_brush(j), name=arm["name"]))
        self.per_class.getAxis("bottom").setTicks([[(c, name) for c, name in enumerate(classes)]])

    # -- report -------------------------------------------------------------------------------------------
    def save_report(self, folder=None) -> Path | None:
        if self.result is None:
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder for the report")
            if not folder:
                return None
        try:
            write_report(self.result, folder)
        except AugstudioError as e:
            self._fail(e)
            return None
        self.status.setText(f"Report written to {folder}/report.html")
        return Path(folder)
