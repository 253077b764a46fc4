"""Live preview: the original and the augmented image side by side (synchronised zoom/pan), a grid of N
samples of the chain for the same image with their copy indices, or the steps (the image after each step),
plus the parameters each step drew (for every copy of the grid).

Rendering runs off the GUI thread through the context's latest-wins runner and is debounced: while a
slider moves only the newest request is rendered. Everything augmentation-related goes through the core
(``Recipe.pipeline().run`` / ``replay``); this module only converts pictures for display. A message (no
image selected, a file that cannot be read, an empty folder) replaces the pictures, so nothing stale
stays on screen. Fit / 1:1 zoom, and the pixel under the cursor is read out in the tool bar; a click on a
grid cell shows that copy large, with its parameters.

When the folder is a dataset with targets (COCO, YOLO, VOC, mask folder; read once per opened folder, on
the worker), the masks, boxes and keypoints are drawn over the original and each augmented copy, moved by
the records that made the copy's pixels (``Pipeline.replay_targets``, as ``Recipe.apply(targets=)`` does);
a badge says what the recipe dropped, or which step cannot carry targets.
"""

from __future__ import annotations

import re
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from augstudio.gui.qt.workers import error_message
from augstudio.gui.widgets.image_view import ImagePane, fit_later
from augstudio.gui.widgets.target_overlay import KINDS, TargetSource, lost_summary

from .render import PictureCache, fmt_size, records_text, render, render_steps, short_params

SINGLE, GRID, STEPS = "single", "grid", "steps"
PAGES = {SINGLE: 0, GRID: 1, STEPS: 2}
MESSAGE_PAGE = 3


class PreviewWidget(QWidget):
    rendered = Signal(dict)  # {"ms", "size", "display_ms", "total_ms"}

    DEBOUNCE_MS = 15

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.pictures = PictureCache()
        self.copy = 0
        self.mode = SINGLE
        self.last_result: dict | None = None
        self.renders = 0
        self._fitted_size = None
        self._grid_copy: int | None = None  # the grid's first copy while one of its cells is shown large
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

        self.single = ImagePane()
        self.single.set_layout(["original", "augmented"], cols=2)
        self.grid = ImagePane()
        self.steps = ImagePane()
        self.message = QLabel("Loading the augmentation engine (torch)…")
        self.message.setObjectName("previewMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stack = QStackedWidget()
        for w in (self.single, self.grid, self.steps, self.message):
            self.stack.addWidget(w)
        self.stack.setCurrentIndex(MESSAGE_PAGE)

        self.mode_btn = QToolButton()
        self.mode_btn.setText("Grid")
        self.mode_btn.setCheckable(True)
        self.mode_btn.setToolTip("N samples of the chain for this image (G); click a cell to see it large")
        self.n_spin = QSpinBox()
        self.n_spin.setRange(2, 36)
        self.n_spin.setValue(8)
        self.n_spin.setPrefix("N = ")
        self.steps_btn = QToolButton()
        self.steps_btn.setText("Steps")
        self.steps_btn.setCheckable(True)
        self.steps_btn.setToolTip("the image after each step of the chain, for this copy (S)")
        self.reroll_btn = QPushButton("Reroll")
        self.reroll_btn.setToolTip("the next copy index: new random draws (R, or Ctrl+R anywhere)")
        self.lock = QCheckBox("Lock")
        self.lock.setToolTip("keep the copy index fixed: Reroll is off and every image shows the same draw")
        self.copy_label = QLabel("copy 0")
        self.fit_btn = QToolButton()
        self.fit_btn.setText("Fit")
        self.fit_btn.setToolTip("zoom to fit the pictures (Ctrl+0); the mouse wheel zooms, dragging pans")
        self.actual_btn = QToolButton()
        self.actual_btn.setText("1:1")
        self.actual_btn.setToolTip("one picture pixel per screen pixel (Ctrl+1)")
        # the dataset's targets: one toggle per kind, in a menu (three check boxes would widen the window)
        self.targets_btn = QToolButton()
        self.targets_btn.setText("Targets")
        self.targets_btn.setToolTip("draw the dataset's masks, boxes and keypoints, moved as the pixels were")
        self.targets_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.targets_btn.setMenu(QMenu(self.targets_btn))
        self.targets_btn.hide()  # shown once the open folder turns out to have targets
        self.kind_actions = {}
        for kind in KINDS:
            act = self.kind_actions[kind] = self.targets_btn.menu().addAction(kind.capitalize())
            act.setCheckable(True)
            act.setChecked(ctx.settings.q.value(f"preview/show_{kind}", True, type=bool))
            act.toggled.connect(lambda on, k=kind: self._kind_toggled(k, on))
        self.targets = TargetSource()
        self.pixel_label = QLabel("")
        self.time_label = QLabel("")
        for lab in (self.copy_label, self.pixel_label, self.time_label):
            lab.setObjectName("dim")
        self.pixel_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens
        self.pixel_label.setToolTip("the pixel under the cursor: position and value")

        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for w in (self.mode_btn, self.n_spin, self.steps_btn):
            bar.addWidget(w)
        bar.addSpacing(8)
        bar.addWidget(self.reroll_btn)
        bar.addWidget(self.lock)
        bar.addWidget(self.copy_label)
        bar.addWidget(self.targets_btn)
        bar.addWidget(self.pixel_label, 1)
        bar.addWidget(self.fit_btn)
        bar.addWidget(self.actual_btn)
        bar.addWidget(self.time_label)

        self.params = QTreeWidget()
        self.params.setObjectName("appliedParams")
        self.params.setHeaderLabels(["step", "applied", "parameters drawn for this sample"])
        self.params.setRootIsDecorated(False)
        self.params.setColumnWidth(0, 170)
        self.params.setColumnWidth(1, 60)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(bar)
        tl.addWidget(self.stack, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.params)
        split.setSizes([520, 130])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DEBOUNCE_MS)
        self._timer.timeout.connect(self._submit)
        self.mode_btn.toggled.connect(self.set_grid_mode)
        self.steps_btn.toggled.connect(self.set_steps_mode)
        self.n_spin.valueChanged.connect(lambda _n: self.request())
        self.reroll_btn.clicked.connect(self.reroll)
        self.lock.toggled.connect(lambda on: self.reroll_btn.setEnabled(not on))
        self.fit_btn.clicked.connect(self.fit)
        self.actual_btn.clicked.connect(self.actual_size)
        for pane in (self.single, self.grid, self.steps):
            pane.hovered.connect(self.pixel_label.setText)
        self._kind_toggled(None, True)
        self.grid.clicked.connect(self.open_cell)
        # single letters act only while the preview has the focus: typing in a list or a field never rerolls
        here = Qt.ShortcutContext.WidgetWithChildrenShortcut
        QShortcut(QKeySequence("R"), self, activated=self.reroll, context=here)
        QShortcut(QKeySequence("G"), self, activated=self.mode_btn.toggle, context=here)
        QShortcut(QKeySequence("S"), self, activated=self.steps_btn.toggle, context=here)
        ctx.current_item_changed.connect(lambda _i: self.request())
        ctx.recipe_changed.connect(lambda _r: self.request())
        ctx.torch_ready.connect(self.request)

    @property
    def grid_mode(self) -> bool:
        return self.mode == GRID

    # -- requests ----------------------------------------------------------------------------------
    def reroll(self) -> None:
        if self.lock.isChecked():
            return
        self.copy += self.n_spin.value() if self.mode == GRID else 1
        self._grid_copy = None
        self.request()

    def _set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        if mode == GRID and self._grid_copy is not None:
            self.copy, self._grid_copy = self._grid_copy, None
        self.mode = mode
        for btn, m in ((self.mode_btn, GRID), (self.steps_btn, STEPS)):
            if btn.isChecked() != (mode == m):
                btn.setChecked(mode == m)  # the View menu's actions follow its toggled signal
        self._fitted_size = None
        self.request()

    def set_grid_mode(self, on: bool) -> None:
        if on or self.mode == GRID:
            self._set_mode(GRID if on else SINGLE)

    def set_steps_mode(self, on: bool) -> None:
        if on or self.mode == STEPS:
            self._set_mode(STEPS if on else SINGLE)

    def open_cell(self, i: int) -> None:
        """Show copy ``i`` of the grid large, side by side with the original, with its parameters (Grid
        again returns to the same grid)."""
        res = self.last_result
        if self.mode != GRID or res is None or not res.get("grid") or i >= len(res["outputs"]):
            return
        first = self.copy
        self.copy = res["outputs"][i][0]
        self._set_mode(SINGLE)
        self._grid_copy = first

    def request(self) -> None:
        self._timer.start()

    def _kind_toggled(self, kind, on: bool) -> None:
        if kind is not None:
            self.ctx.settings.q.setValue(f"preview/show_{kind}", on)
        kinds = {k for k, act in self.kind_actions.items() if act.isChecked()}
        for pane in (self.single, self.grid):
            pane.set_overlay_kinds(kinds)

    def copies(self) -> list[int]:
        if self.mode == GRID:
            return list(range(self.copy, self.copy + self.n_spin.value()))
        return [self.copy]

    def _submit(self) -> None:
        ctx = self.ctx
        path, item = ctx.current_path(), ctx.current_item()
        if not ctx.is_torch_ready():
            return
        if path is None:
            ds = ctx.dataset()
            if ds is None:
                self.show_message("Open a dataset folder (File > Open folder, or drop a folder here)")
            elif not len(ds):
                self.show_message(f"No images in {ds.root}: open a folder with png, jpg, bmp, tif or webp files")
            else:
                self.show_message("Select an image in the browser")
            return
        recipe = ctx.recipe().copy()
        copies = self.copies()
        mode = self.mode
        pictures, source, ds = self.pictures, self.targets, ctx.dataset()
        t_submit = time.perf_counter()

        def work(token):
            pic = pictures.get(path)
            token.check()
            tg = source.get(ds, item.path, pic.size)
            args = (None, []) if tg is None else (tg["targets"], tg["classes"])
            if mode == STEPS:
                res = render_steps(pic, recipe, item.path, copies[0], token, *args)
            else:
                res = render(pic, recipe, item.path, copies, token, *args)
            if tg is not None and tg["note"]:
                res["targets_note"] = tg["note"]
            res.update(has_targets=tg is not None, copies=copies, grid=mode == GRID, mode=mode, t_submit=t_submit, path=str(path))
            return res

        ctx.preview_runner.submit(work, self._show, self._error)

    # -- display -----------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """Show ``text`` instead of the pictures (which are cleared, so nothing stale remains)."""
        self.message.setText(text)
        self.stack.setCurrentIndex(MESSAGE_PAGE)
        for pane in (self.single, self.grid, self.steps):
            pane.clear_images()
        self.params.clear()
        self.pixel_label.setText("")
        self.time_label.setText("")
        self.last_result = None
        self._fitted_size = None

    def _error(self, error: BaseException) -> None:
        self.show_message(f"⚠ {error_message(error)}")

    def fit(self) -> None:
        pane = self.stack.currentWidget()
        if isinstance(pane, ImagePane):
            pane.fit()

    def actual_size(self) -> None:
        pane = self.stack.currentWidget()
        if isinstance(pane, ImagePane):
            pane.actual_size()

    def _show(self, res: dict) -> None:
        t0 = time.perf_counter()
        if res["mode"] != self.mode:
            self.request()  # the mode changed while it rendered
            return
        outs = res["outputs"]
        h, w = res["size"]
        if res["mode"] == GRID:
            n = len(outs)
            cols = int(np.ceil(np.sqrt(n * 1.3)))
            if len(self.grid.items) != n:
                self.grid.set_layout([f"copy {c}" for c, *_ in outs], cols)
                self._fitted_size = None
            for i, (c, a, rec, size) in enumerate(outs):
                self.grid.show(i, a, f"copy {c}  ·  {fmt_size(size)}")
                self._show_targets(self.grid, i, res["overlays"][i], rec, res, short=True)
            pane = self.grid
            fit = max((o[3] for o in outs), key=lambda s: s[0] * s[1])
        elif res["mode"] == STEPS:
            frames = res["frames"]
            titles = ["original"] + [f"{r['step']}. {r['op']}" for r, *_ in frames[1:]]
            if len(self.steps.items) != len(frames):
                self.steps.set_layout(titles, int(np.ceil(np.sqrt(len(frames) * 1.3))))
                self._fitted_size = None
            for i, (rec, a, size) in enumerate(frames):
                if rec is None:
                    title = f"original  ·  {fmt_size(size)}"
                elif not rec["applied"]:
                    title = f"{rec['step']}. {rec['op']}  ·  not applied"
                else:
                    drawn = short_params(rec["params"], 30)
                    title = f"{rec['step']}. {rec['op']}" + (f"  ·  {drawn}" if drawn else "")
                self.steps.show(i, a, title)
                self._show_targets(self.steps, i, res["frame_overlays"][i], [rec] if rec else [], res, short=True)
            pane = self.steps
            fit = max((f[2] for f in frames), key=lambda s: s[0] * s[1])
        else:
            c, a, _rec, size = outs[0]
            # pictures of similar size share zoom / pan; a small crop of a large photo gets its own zoom
            linked = max(h / size[0], size[0] / h, w / size[1], size[1] / w) <= 1.5
            if linked != self.single.linked:
                self.single.set_linked(linked)
                self._fitted_size = None
            own = "" if linked else "  ·  own zoom"
            self.single.show(0, res["original"], f"original  ·  {fmt_size((h, w))}{own}")
            self.single.show(1, a, f"augmented · copy {c}  ·  {fmt_size(size)}{own}")
            self.single.set_targets(0, res["original_overlay"])
            self._show_targets(self.single, 1, res["overlays"][0], outs[0][2], res)
            pane = self.single
            fit = (max(h, size[0]), max(w, size[1]), linked)
        self.targets_btn.setVisible(res["has_targets"])
        self.stack.setCurrentIndex(PAGES[res["mode"]])
        if self._fitted_size != (fit, res["mode"]):
            fit_later(pane, *fit[:2])  # once the page has its size
            self._fitted_size = (fit, res["mode"])
        self.copy_label.setText(f"copy {outs[0][0]}" + (f"–{outs[-1][0]}" if len(outs) > 1 else ""))
        self._show_records(outs)
        self.last_result = res
        self.renders += 1
        display_ms = (time.perf_counter() - t0) * 1000.0
        total_ms = (time.perf_counter() - res["t_submit"]) * 1000.0
        self.time_label.setText(f"{res['ms']:.1f} ms")
        self.rendered.emit({"ms": res["ms"], "display_ms": display_ms, "size": res["size"],
                            "total_ms": total_ms})

    @staticmethod
    def _show_targets(pane, i, overlay, records, res, short: bool = False) -> None:
        """The moved targets over view ``i``, and a badge: what the recipe dropped, or why none are drawn."""
        pane.set_targets(i, overlay)
        lost, details = lost_summary(records)
        if res["targets_note"]:
            pane.set_badge(i, "no targets" if short else res["targets_note"], res["targets_note"], kind="note")
        else:
            pane.set_badge(i, f"⚠ {re.sub(r' [(][^)]*[)]', '', lost) if short else lost}" if lost else "", details)

    def _show_records(self, outs) -> None:
        """The parameters each step drew: for one copy as rows, for a grid one branch per copy."""
        self.params.clear()
        grid = len(outs) > 1
        self.params.setRootIsDecorated(grid)
        self.params.headerItem().setText(2, "parameters drawn for each copy" if grid
                                         else f"parameters drawn for copy {outs[0][0]}")
        for k, (c, _a, records, size) in enumerate(outs):
            parent = None
            if grid:
                parent = QTreeWidgetItem([f"copy {c}", "", fmt_size(size)])
                self.params.addTopLevelItem(parent)
            for r in records:
                applied = r["applied"]
                text = records_text(r["params"]) if applied else ""
                it = QTreeWidgetItem([f"{r['step']}. {r['op']}", "yes" if applied else "no", text])
                it.setToolTip(2, text)  # the whole text where the column cuts it
                it.setToolTip(0, f"{r['step']}. {r['op']}")
                if not applied:
                    for col in range(3):
                        it.setForeground(col, QColor("#7b808a"))
                if parent is None:
                    self.params.addTopLevelItem(it)
                else:
                    parent.addChild(it)
            if parent is not None:
                parent.setExpanded(k == 0)
