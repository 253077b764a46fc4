"""The style panel: texture synthesis, Gatys style transfer, AdaIN, fast style networks and the weight-free
style randomisers on your own images, with a live intermediate image and a loss curve.

Content and style come from the dataset (the shown item) or from files. Each run is a job on the shared
pool (``ctx.run_job``): the Jobs panel shows its progress, ETA and cancel button; this panel shows the
previews the job yields (``{"image", "loss"}``). The result can be saved or added to a style bank folder
(the folder the ``stylize`` recipe op draws from).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import ParamError
from augstudio.core.base.jobs import Progress
from augstudio.core.io.images import Picture, write_image
from augstudio.core.methods.style.dispatch import StyleSettings, check_inputs, style_job
from augstudio.gui.qt.workers import error_message

METHODS = {
    "texture": "Texture synthesis (Gram matrices, from noise)",
    "transfer": "Style transfer (Gatys et al., optimisation)",
    "adain": "AdaIN (trained decoder)",
    "fast": "Fast style network (trained model)",
    "randconv": "Random convolution (RandConv, no weights)",
    "stats": "Random style statistics (no weights)",
}
# which inputs each method uses
USES = {
    "texture": {"style", "features", "optim", "size"},
    "transfer": {"content", "style", "features", "optim", "alpha", "beta"},
    "adain": {"content", "style", "model", "alpha", "preserve"},
    "fast": {"content", "model", "alpha"},
    "randconv": {"content", "alpha"},
    "stats": {"content", "alpha"},
}


# what a run does before its first iteration (the Jobs row and the status line say it)
PHASES = {
    "texture": "preparing: building the feature network and the style image's Gram targets (the first "
               "iteration follows; at 256 px on a CPU this can take half a minute)",
    "transfer": "preparing: building the feature network, the content and style targets (the first "
                "iteration follows; at 256 px on a CPU this can take half a minute)",
    "adain": "loading the AdaIN encoder and decoder, then stylising",
    "fast": "loading the fast style network, then stylising",
    "randconv": "stylising with random convolutions",
    "stats": "stylising with random style statistics",
}


class _Picker(QWidget):
    """A path field with "shown item" and "file…" buttons."""

    def __init__(self, ctx, title: str, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(f"{title} image file")
        self.item_btn = QPushButton("Shown item")
        self.item_btn.setToolTip("use the image shown in the browser")
        self.file_btn = QPushButton("File…")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.item_btn)
        row.addWidget(self.file_btn)
        self.item_btn.clicked.connect(self.use_current)
        self.file_btn.clicked.connect(self._browse)

    def use_current(self) -> bool:
        p = self.ctx.current_path()
        if p is None:
            return False
        self.edit.setText(str(p))
        return True

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose an image", self.edit.text(),
                                              "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)")
        if path:
            self.edit.setText(path)

    def path(self) -> str:
        return self.edit.text().strip()


class StylePanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(imageAxisOrder="row-major")
        self.ctx = ctx
        self.result = None  # the last StyleResult
        self.losses: list[float] = []  # the losses received (progress reports are throttled: some are skipped)
        self.loss_x: list[int] = []  # their iteration numbers
        self.errors: list[str] = []
        self.handle = None
        self.saved: list[Path] = []

        self.method = QComboBox()
        for key, text in METHODS.items():
            self.method.addItem(text, key)
        self.content = _Picker(ctx, "content")
        self.style = _Picker(ctx, "style")

        self.features = QComboBox()
        self.features.addItem("random multi-scale (no weights)", "random")
        self.features.addItem("VGG19", "vgg19")
        self.weights = QLineEdit("imagenet")
        self.weights.setToolTip("VGG19 weights: imagenet (torchvision's cache), random, or a .pth file")
        self.optimizer = QComboBox()
        self.optimizer.addItems(["lbfgs", "adam"])
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 100000)
        self.iterations.setValue(100)
        self.pyramid = QSpinBox()
        self.pyramid.setRange(1, 5)
        self.pyramid.setValue(1)
        self.size = QSpinBox()
        self.size.setRange(16, 2048)
        self.size.setValue(256)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0e9)
        self.alpha.setDecimals(3)
        self.alpha.setValue(1.0)
        self.alpha.setToolTip("transfer: content weight; AdaIN / fast / randomisers: style strength 0..1")
        self.beta = QLineEdit("1e6")
        self.beta.setToolTip("style weight of Gatys style transfer")
        self.model = QLineEdit()
        self.model.setPlaceholderText("decoder.pth (AdaIN) or a fast style model .pth")
        self.model_btn = QPushButton("…")
        self.preserve = QCheckBox("keep content colours")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.max_size = QSpinBox()
        self.max_size.setRange(32, 4096)
        self.max_size.setValue(512)

        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.model_btn)
        form = QFormLayout()
        form.addRow("Method", self.method)
        form.addRow("Content", self.content)
        form.addRow("Style", self.style)
        form.addRow("Features", self.features)
        form.addRow("VGG weights", self.weights)
        form.addRow("Optimiser", self.optimizer)
        form.addRow("Iterations", self.iterations)
        form.addRow("Pyramid levels", self.pyramid)
        form.addRow("Texture size", self.size)
        form.addRow("Alpha", self.alpha)
        form.addRow("Beta", self.beta)
        form.addRow("Model", model_row)
        form.addRow("", self.preserve)
        form.addRow("Seed", self.seed)
        form.addRow("Max side", self.max_size)
        self._rows = {"features": [self.features, self.weights], "optim": [self.optimizer, self.iterations,
                      self.pyramid], "size": [self.size], "alpha": [self.alpha], "beta": [self.beta],
                      "model": [self.model, self.model_btn], "preserve": [self.preserve],
                      "content": [self.content], "style": [self.style]}

        self.start_btn = QPushButton("Start")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.save_btn = QPushButton("Save result…")
        self.bank_btn = QPushButton("Add to style bank…")
        self.save_btn.setEnabled(False)
        self.bank_btn.setEnabled(False)
        self.status = QLabel("choose a method, content and style, then Start")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.start_btn, self.cancel_btn, self.save_btn, self.bank_btn):
            buttons.addWidget(b)

        box = QGroupBox("Style")
        left = QVBoxLayout(box)
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.status)
        left.addStretch(1)

        # -- live view ------------------------------------------------------------------------------
        self.view = pg.GraphicsLayoutWidget()
        self.viewbox = self.view.addViewBox(lockAspect=True, invertY=True)
        self.image_item = pg.ImageItem()
        self.viewbox.addItem(self.image_item)
        self.plot = pg.PlotWidget(title="loss")
        self.plot.setLogMode(False, True)
        self.plot.setLabel("bottom", "iteration")
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#3b82f6", width=2))
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.view)
        right.addWidget(self.plot)
        right.setSizes([400, 200])

        split = QSplitter()
        split.addWidget(box)
        split.addWidget(right)
        split.setSizes([380, 700])
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        self.method.currentIndexChanged.connect(self._method_changed)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.save_btn.clicked.connect(self._save_dialog)
        self.bank_btn.clicked.connect(self._bank_dialog)
        self.model_btn.clicked.connect(self._browse_model)
        ctx.current_item_changed.connect(self._item_changed)
        self._method_changed()

    # -- form ---------------------------------------------------------------------------------------
    def set_method(self, key: str) -> None:
        self.method.setCurrentIndex(self.method.findData(key))

    def _method_changed(self, *_):
        uses = USES[self.method.currentData()]
        for key, widgets in self._rows.items():
            for w in widgets:
                w.setEnabled(key in uses)

    def _item_changed(self, item):
        if item is not None and not self.content.path():
            self.content.use_current()

    def _browse_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", self.model.text(), "Models (*.pth *.pt)")
        if path:
            self.model.setText(path)

    # -- jobs ---------------------------------------------------------------------------------------
    def make_job(self):
        """The job factory for the current form; raises ParamError (saying what to give) on a bad form."""
        m = self.method.currentData()
        uses = USES[m]
        try:
            beta = float(self.beta.text())
        except ValueError:
            raise ParamError(f"beta must be a number, got {self.beta.text()!r}") from None
        size = self.size.value()
        settings = StyleSettings(
            seed=self.seed.value(), iterations=self.iterations.value(), optimizer=self.optimizer.currentText(),
            pyramid=self.pyramid.value(), features=self.features.currentData(),
            weights=self.weights.text().strip() or "imagenet", preview_every=max(1, self.iterations.value() // 50),
            size=(size, size), beta=beta, alpha=self.alpha.value(), max_size=self.max_size.value(),
            model=self.model.text().strip() or None, preserve_color=self.preserve.isChecked())
        device = self.ctx.device()
        content = self.content.path() if "content" in uses else ""
        styles = [self.style.path()] if "style" in uses and self.style.path() else []
        check_inputs(m, settings, content or None, styles)
        phase = PHASES.get(m, "preparing")
        total = settings.iterations if m in ("texture", "transfer") else 1

        def job(token):
            # the first report comes at once: the setup before the first iteration can take half a minute
            yield Progress(0, total, phase)
            return (yield from style_job(m, settings, content or None, styles, device, token))

        return job

    def start(self):
        try:
            job = self.make_job()
        except ParamError as e:
            self._on_error(e)
            return None
        self.losses, self.loss_x = [], []
        self.curve.setData([], [])
        self.image_item.clear()  # the previous result does not stay up during a new run
        self.result = None
        self.save_btn.setEnabled(False)
        self.bank_btn.setEnabled(False)
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(PHASES.get(self.method.currentData(), "running…"))
        title = f"style: {self.method.currentData()}"
        self.handle = self.ctx.run_job(title, job, on_result=self._on_result, on_progress=self._on_progress,
                                       on_error=self._on_error)
        self.handle.ended.connect(self._ended)
        return self.handle

    def cancel(self):
        """Stop the run. The panel is free at once (Start works again; whatever the old run still reports
        is ignored); the job itself stops after the iteration it is in."""
        if self.handle is not None and self.handle.is_running():
            self.handle.cancel()
            self._detach(self.handle)
            self.status.setText("cancelled (the job stops after its current iteration; see Jobs)")

    def _detach(self, handle) -> None:
        for sig, slot in ((handle.progress, self._on_progress), (handle.finished, self._on_result),
                          (handle.failed, self._on_error), (handle.ended, self._ended)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        self.handle = None
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _ended(self):
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if self.handle is not None and self.handle.state == "cancelled":
            self.status.setText("cancelled")

    def _on_progress(self, p):
        prev = p.preview if isinstance(p.preview, dict) else {}
        if prev.get("loss") is not None:
            self.losses.append(float(prev["loss"]))
            self.loss_x.append(int(prev.get("iteration", p.done)))
            ys = np.maximum(np.asarray(self.losses, dtype=float), 1e-30)
            self.curve.setData(np.asarray(self.loss_x), ys)
        if prev.get("image") is not None:
            self.show_image(prev["image"])
        if p.message:
            self.status.setText(p.message)

    def show_image(self, img) -> None:
        """``img``: uint8 3 x H x W tensor (or H x W x 3 array)."""
        arr = img.permute(1, 2, 0).numpy() if hasattr(img, "permute") else np.asarray(img)
        self.image_item.setImage(np.ascontiguousarray(arr), autoLevels=False, levels=(0, 255))
        self.viewbox.autoRange(padding=0.02)

    def _on_result(self, result):
        self.result = result
        self.show_image(result.image)
        self.save_btn.setEnabled(True)
        self.bank_btn.setEnabled(True)
        tail = f", loss {result.losses[0]:.3g} -> {result.losses[-1]:.3g}" if result.losses else ""
        self.status.setText(f"done in {result.seconds:.1f} s{tail}")

    def _on_error(self, error: BaseException):
        msg = error_message(error)
        self.errors.append(msg)
        self.status.setText(f"error: {msg}")

    # -- output -------------------------------------------------------------------------------------
    def save_result(self, path) -> Path:
        if self.result is None:
            raise ValueError("nothing to save yet")
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, Picture(self.result.image, "rgb"))
        self.saved.append(path)
        self.status.setText(f"saved {path}")
        return path

    def add_to_bank(self, folder) -> Path:
        """Write the result into a style bank folder (a new numbered file; nothing is overwritten)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.method.currentData()}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = folder / f"{stem}.png", 1
        while path.exists():
            path, n = folder / f"{stem}-{n}.png", n + 1
        return self.save_result(path)

    def _save_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save result", "style.png", "PNG (*.png);;JPEG (*.jpg)")
        if path:
            self.save_result(path)

    def _bank_dialog(self):
        folder = QFileDialog.getExistingDirectory(self, "Style bank folder")
        if folder:
            self.add_to_bank(folder)
