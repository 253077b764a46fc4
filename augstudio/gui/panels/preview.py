"""Live preview: the original and the augmented image side by side (synchronised zoom/pan), or a grid of
N samples of the chain for the same image with their copy indices, plus the parameters each step drew.

Rendering runs off the GUI thread through the context's latest-wins runner and is debounced: while a
slider moves only the newest request is rendered. Everything augmentation-related goes through the core
(``Recipe.pipeline().run``); this module only converts pictures for display.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.io.images import read_image
from augstudio.gui.qt.images import display_array
from augstudio.gui.qt.workers import error_message
from augstudio.gui.widgets.image_view import ImagePane


class PictureCache:
    """The last few decoded source pictures (thread-safe)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._d: dict = {}
        self._lock = threading.Lock()

    def get(self, path):
        key = str(path)
        with self._lock:
            pic = self._d.get(key)
        if pic is None:
            pic = read_image(path)
            with self._lock:
                self._d[key] = pic
                while len(self._d) > self.size:
                    self._d.pop(next(iter(self._d)))
        return pic


def render(pic, recipe, item_key, copies, token=None) -> dict:
    """Run the recipe on ``pic`` for each copy index; returns display arrays and step records."""
    t0 = time.perf_counter()
    pipe = recipe.pipeline()
    outs = []
    for c in copies:
        if token is not None:
            token.check()
        out, records = pipe.run(pic, recipe.seed, item_key, c)
        outs.append((c, display_array(out), records, out.size))
    return {"original": display_array(pic), "outputs": outs, "size": pic.size,
            "ms": (time.perf_counter() - t0) * 1000.0}


def _records_text(params) -> str:
    if params is None:
        return ""
    return json.dumps(params, separators=(", ", ": "), default=str)


class PreviewWidget(QWidget):
    rendered = Signal(dict)  # {"ms", "size", "display_ms"}

    DEBOUNCE_MS = 15

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.pictures = PictureCache()
        self.copy = 0
        self.grid_mode = False
        self.last_result: dict | None = None
        self.renders = 0
        self._fitted_size = None

        self.single = ImagePane()
        self.single.set_layout(["original", "augmented"], cols=2)
        self.grid = ImagePane()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.single)
        self.stack.addWidget(self.grid)
        self.message = QLabel("Loading the augmentation engine (torch)…")
        self.message.setObjectName("previewMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)

        self.mode_btn = QToolButton()
        self.mode_btn.setText("Grid")
        self.mode_btn.setCheckable(True)
        self.mode_btn.setToolTip("show N samples of the chain for this image (G)")
        self.n_spin = QSpinBox()
        self.n_spin.setRange(2, 36)
        self.n_spin.setValue(8)
        self.n_spin.setPrefix("N = ")
        self.reroll_btn = QPushButton("Reroll (R)")
        self.lock = QCheckBox("Lock seed")
        self.lock.setToolTip("keep the copy index fixed: Reroll is off and every image shows the same draw")
        self.copy_label = QLabel("copy 0")
        self.copy_label.setObjectName("dim")

        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.mode_btn)
        bar.addWidget(self.n_spin)
        bar.addSpacing(12)
        bar.addWidget(self.reroll_btn)
        bar.addWidget(self.lock)
        bar.addWidget(self.copy_label)
        bar.addStretch(1)
        self.time_label = QLabel("")
        self.time_label.setObjectName("dim")
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
        tl.addWidget(self.message)
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
        self.n_spin.valueChanged.connect(lambda _n: self.request())
        self.reroll_btn.clicked.connect(self.reroll)
        self.lock.toggled.connect(lambda on: self.reroll_btn.setEnabled(not on))
        QShortcut(QKeySequence("R"), self, activated=self.reroll,
                  context=Qt.ShortcutContext.WindowShortcut)
        QShortcut(QKeySequence("G"), self, activated=self.mode_btn.toggle,
                  context=Qt.ShortcutContext.WindowShortcut)
        ctx.current_item_changed.connect(lambda _i: self.request())
        ctx.recipe_changed.connect(lambda _r: self.request())
        ctx.torch_ready.connect(self.request)

    # -- requests ----------------------------------------------------------------------------------
    def reroll(self) -> None:
        if self.lock.isChecked():
            return
        self.copy += 1 if not self.grid_mode else self.n_spin.value()
        self.request()

    def set_grid_mode(self, on: bool) -> None:
        self.grid_mode = on
        if self.mode_btn.isChecked() != on:
            self.mode_btn.setChecked(on)
        self.stack.setCurrentIndex(1 if on else 0)
        self._fitted_size = None
        self.request()

    def request(self) -> None:
        self._timer.start()

    def copies(self) -> list[int]:
        if self.grid_mode:
            return list(range(self.copy, self.copy + self.n_spin.value()))
        return [self.copy]

    def _submit(self) -> None:
        ctx = self.ctx
        path, item = ctx.current_path(), ctx.current_item()
        if not ctx.is_torch_ready():
            return
        if path is None:
            self.show_message("Select an image in the browser")
            return
        recipe = ctx.recipe().copy()
        copies = self.copies()
        pictures = self.pictures
        t_submit = time.perf_counter()

        def work(token):
            pic = pictures.get(path)
            token.check()
            res = render(pic, recipe, item.path, copies, token)
            res["copies"] = copies
            res["grid"] = len(copies) > 1
            res["t_submit"] = t_submit
            return res

        ctx.preview_runner.submit(work, self._show, self._error)

    # -- display -----------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _error(self, error: BaseException) -> None:
        self.show_message(f"⚠ {error_message(error)}")
        self.params.clear()

    def _show(self, res: dict) -> None:
        t0 = time.perf_counter()
        self.message.hide()
        outs = res["outputs"]
        h, w = res["size"]
        if res["grid"]:
            titles = [f"copy {c}" for c, *_ in outs]
            n = len(outs)
            cols = int(np.ceil(np.sqrt(n * 1.3)))
            if len(self.grid.items) != n:
                self.grid.set_layout(titles, cols)
                self._fitted_size = None
            for i, (c, a, _rec, size) in enumerate(outs):
                self.grid.show(i, a, f"copy {c}  ·  {size[1]}×{size[0]}")
            pane = self.grid
            fit = max((o[3] for o in outs), key=lambda s: s[0] * s[1])
        else:
            c, a, _rec, size = outs[0]
            self.single.show(0, res["original"], f"original  ·  {w}×{h}")
            self.single.show(1, a, f"augmented · copy {c}  ·  {size[1]}×{size[0]}")
            pane = self.single
            fit = (max(h, size[0]), max(w, size[1]))
        if self._fitted_size != (fit, res["grid"]):
            pane.fit(*fit)
            self._fitted_size = (fit, res["grid"])
        self.copy_label.setText(f"copy {outs[0][0]}" + (f"–{outs[-1][0]}" if len(outs) > 1 else ""))
        self.params.headerItem().setText(2, f"parameters drawn for copy {outs[0][0]}"
                                         + (" (the first of the grid)" if len(outs) > 1 else ""))
        self._show_records(outs[0][2])
        self.last_result = res
        self.renders += 1
        display_ms = (time.perf_counter() - t0) * 1000.0
        total_ms = (time.perf_counter() - res["t_submit"]) * 1000.0
        self.time_label.setText(f"{res['ms']:.1f} ms")
        self.rendered.emit({"ms": res["ms"], "display_ms": display_ms, "size": res["size"],
                            "total_ms": total_ms})

    def _show_records(self, records: list[dict]) -> None:
        self.params.clear()
        for r in records:
            applied = r["applied"]
            it = QTreeWidgetItem([f"{r['step']}. {r['op']}", "yes" if applied else "no",
                                  _records_text(r["params"]) if applied else ""])
            if not applied:
                for col in range(3):
                    it.setForeground(col, QColor("#7b808a"))
            self.params.addTopLevelItem(it)
