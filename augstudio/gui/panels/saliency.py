"""The saliency panel: a gradient heat map over the current image, with the localisation box.

* Model: the probe classifier of the open dataset (reused when saved; "Train probe" trains it) or a model
  file the user picks (checkpoint; TorchScript only after an explicit yes), both through the shared
  model-loading job (``ctx.models``).
* Method (vanilla / SmoothGrad / gradient x input) and target class (predicted, or one class). Computing
  (``core.saliency.compute_saliency``) runs on a latest-wins runner whose tasks show in the Jobs panel: a
  newer request cancels an older one, whose result is dropped.
* Display: opacity, colormap and threshold act on the stored map at once (no recomputation): the
  threshold hides the heat map below it and sets the box (largest region above it, ``saliency_box``).
* Maps are computed only while the panel is on screen: browsing with the Saliency tab hidden (or another
  tab shown) starts nothing; showing the panel computes the map of the image shown then, once.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.io.images import read_image
from augstudio.core.methods.saliency import (
    COLORMAPS,
    DEFAULT_THRESHOLD,
    LOCALISE,
    METHODS,
    compute_saliency,
    overlay,
    saliency_box,
)
from augstudio.core.models.loading import _is_torchscript
from augstudio.core.workflows.probe import find_probe
from augstudio.gui.qt.models import ModelRequest
from augstudio.gui.qt.workers import error_message
from augstudio.gui.widgets.image_view import ImageLabel

NEEDS_MODEL = ("Saliency needs a classifier: press \"Train probe\" to train a small one on this dataset "
               "(a job, about a minute), or choose \"Model file…\"")


def _slider(lo, hi, value) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(lo, hi)
    s.setValue(value)
    s.setMinimumWidth(90)
    return s


class SaliencyPanel(QWidget):
    """See the module docstring. ``last_result`` holds the latest computed map (for tests and export)."""

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.model = None  # LoadedModel
        self.probe_kwargs: dict = {}  # probe training settings for find_probe / the probe request (tests shrink it)
        self.last_result: dict | None = None
        self.errors: list[str] = []
        self.runner = ctx.latest(listed=True)
        self._path: Path | None = None
        self._stale = True  # the shown map is not the current image's (computed when the panel is shown)
        self._computed_key = None  # what the last request was for
        # hooks replaced by tests (modal dialogs would block offscreen runs)
        self.confirm_code = self._confirm_code
        self.warn = lambda text: QMessageBox.warning(self, "Saliency", text)

        # -- controls ---------------------------------------------------------------------------
        self.model_info = QLabel("no model yet")
        self.model_info.setWordWrap(True)
        self.train_btn = QPushButton("Train probe")
        self.train_btn.setToolTip("Train a small CNN on the open dataset (a job) and use it for saliency")
        self.file_btn = QPushButton("Model file…")
        self.file_btn.setToolTip("Use your own classifier: a checkpoint (.pt/.pth) or a TorchScript file")
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.method.setCurrentText(LOCALISE["method"])
        self.views = QCheckBox("average flips/turns")
        self.views.setChecked(LOCALISE["views"] == "d4")
        self.multiscale = QCheckBox("multi-scale")
        self.multiscale.setChecked(len(LOCALISE["scales"]) > 1)
        self.target = QComboBox()
        self.target.addItem("predicted class", None)
        self.compute_btn = QPushButton("Compute")
        self.opacity = _slider(0, 100, 55)
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.threshold = _slider(0, 100, int(round(DEFAULT_THRESHOLD * 100)))
        self.threshold_label = QLabel(f"{DEFAULT_THRESHOLD:.2f}")
        self.show_box = QCheckBox("box")
        self.show_box.setChecked(True)
        self.mask_below = QCheckBox("hide below threshold")
        self.image = ImageLabel(NEEDS_MODEL)
        self.image.setMinimumSize(256, 256)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.model_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Model:"))
        row1.addWidget(self.model_info, 1)
        row1.addWidget(self.train_btn)
        row1.addWidget(self.file_btn)
        # two compact rows of controls (the panel fits a 1280-pixel screen beside the docks)
        grid = QGridLayout()
        grid.addWidget(QLabel("Method"), 0, 0)
        grid.addWidget(self.method, 0, 1)
        grid.addWidget(QLabel("Target"), 0, 2)
        grid.addWidget(self.target, 0, 3)
        checks = QHBoxLayout()
        checks.addWidget(self.views)
        checks.addWidget(self.multiscale)
        checks.addStretch(1)
        checks.addWidget(self.compute_btn)
        grid.addLayout(checks, 0, 4, 1, 3)
        grid.addWidget(QLabel("Opacity"), 1, 0)
        grid.addWidget(self.opacity, 1, 1)
        grid.addWidget(QLabel("Colormap"), 1, 2)
        grid.addWidget(self.colormap, 1, 3)
        th = QHBoxLayout()
        th.addWidget(QLabel("Threshold"))
        th.addWidget(self.threshold, 1)
        th.addWidget(self.threshold_label)
        th.addWidget(self.show_box)
        th.addWidget(self.mask_below)
        grid.addLayout(th, 1, 4, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(4, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(grid)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.info)

        self.train_btn.clicked.connect(self.train_probe)
        self.file_btn.clicked.connect(self._pick_file)
        self.compute_btn.clicked.connect(self.compute)
        self.method.currentTextChanged.connect(lambda _t: self.compute())
        self.target.currentIndexChanged.connect(lambda _i: self.compute())
        self.views.toggled.connect(lambda _b: self.compute())
        self.multiscale.toggled.connect(lambda _b: self.compute())
        for w in (self.opacity, self.threshold):
            w.valueChanged.connect(self.render)
        self.colormap.currentTextChanged.connect(self.render)
        self.show_box.toggled.connect(self.render)
        self.mask_below.toggled.connect(self.render)
        ctx.dataset_changed.connect(self._dataset_changed)
        ctx.current_item_changed.connect(self._item_changed)
        if ctx.dataset() is not None:
            self._dataset_changed(ctx.dataset())
        self._update_buttons()

    # -- model --------------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        ds = self.ctx.dataset()
        self.train_btn.setEnabled(ds is not None and len(getattr(ds, "classes", [])) >= 2)
        self.compute_btn.setEnabled(self.model is not None and self._current_path() is not None)

    def _dataset_changed(self, ds) -> None:
        if self.model is not None and self.model.meta.get("probe_for") is not None:
            self._set_model(None)
        self._update_buttons()
        if ds is not None and self.model is None and find_probe(ds, **self.probe_kwargs) is not None:
            self._load(ModelRequest.probe_for(ds.root, **self.probe_kwargs))

    def _item_changed(self, _item) -> None:
        self._update_buttons()
        self.compute(auto=True)

    def showEvent(self, e):  # noqa: N802
        super().showEvent(e)
        if self._stale:
            self.compute(auto=True)  # the image shown now, once

    def _placeholder(self) -> None:
        """Say what the panel waits for, when it has no map to show."""
        if self.last_result is not None:
            return
        if self.model is None:
            self.image.set_image(None)
            self.image.setText(NEEDS_MODEL if self.ctx.dataset() is not None else
                               "Open a labelled dataset (one folder per class) to train the probe on, or "
                               "pick a model file")
        elif self._current_path() is None:
            self.image.set_image(None)
            self.image.setText("Select an image in the browser")

    def _current_path(self) -> Path | None:
        return self._path or self.ctx.current_path()

    def set_image(self, path) -> None:
        """Explain this file instead of the context's current item (None: follow the context again)."""
        self._path = Path(path) if path is not None else None
        self._update_buttons()
        self.compute()

    def train_probe(self):
        ds = self.ctx.dataset()
        if ds is None:
            self.warn("Open a dataset with class sub-folders first; the probe is trained on it.")
            return None
        self.model_info.setText("training the probe… (see Jobs)")
        self.train_btn.setEnabled(False)
        return self._load(ModelRequest.probe_for(ds.root, **self.probe_kwargs))

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Classifier file", "",
                                              "PyTorch models (*.pt *.pth *.ckpt *.ts *.jit *.zip);;All files (*)")
        if path:
            self.set_model_file(path)

    def _confirm_code(self, path) -> bool:
        box = QMessageBox.question(self, "TorchScript model",
                                   f"{path} is a TorchScript file: loading it runs code stored in the file.\n"
                                   "Load it only if you trust where it came from. Load it?")
        return box == QMessageBox.StandardButton.Yes

    def set_model_file(self, path) -> None:
        """Use a checkpoint (or, after confirmation, a TorchScript) file as the model."""
        path = Path(path)
        allow = False
        if path.is_file() and _is_torchscript(path):
            if not self.confirm_code(path):
                return
            allow = True
        self._load(ModelRequest(str(path), allow_code=allow))

    def _load(self, request: ModelRequest):
        return self.ctx.models.load(request, self._model_loaded, self._error)

    def _model_loaded(self, lm) -> None:
        if "trained" in lm.meta:
            self.info.setText(lm.meta["trained"])
        self._set_model(lm)
        self.compute(auto=True)

    def _set_model(self, lm) -> None:
        self.model = lm
        # multi-scale suits size-agnostic models (the probe); a fixed-size model at 3x is slow
        self.multiscale.blockSignals(True)
        self.multiscale.setChecked(lm is not None and lm.meta.get("arch") == "augstudio.probe")
        self.multiscale.blockSignals(False)
        self.target.blockSignals(True)
        self.target.clear()
        self.target.addItem("predicted class", None)
        if lm is not None:
            for i, c in enumerate(lm.classes or []):
                self.target.addItem(str(c), i)
            self.model_info.setText(lm.name if lm.meta.get("probe_for") else f"{lm.source}: {lm.name}")
        else:
            self.model_info.setText("no model yet: train the probe or pick a model file")
        self.target.blockSignals(False)
        self._update_buttons()
        self._placeholder()

    # -- compute ------------------------------------------------------------------------------------
    def settings(self) -> dict:
        return {"method": self.method.currentText(), "target": self.target.currentData(), "seed": 0, "samples": 16,
                "views": "d4" if self.views.isChecked() else "none",
                "scales": tuple(LOCALISE["scales"]) if self.multiscale.isChecked() else (1.0,)}

    def compute(self, auto: bool = False):
        """Compute the map for the current image and settings; returns the request id (None: nothing to do).
        ``auto`` (a new image, a loaded model, the panel shown): only while the panel is on screen, and not
        again for what was last asked; a hidden panel just remembers that its map is stale."""
        path = self._current_path()
        if self.model is None or path is None:
            self._placeholder()
            return None
        lm = self.model
        s = self.settings()
        key = (str(path), id(lm), tuple(sorted((k, str(v)) for k, v in s.items())))
        if auto:
            if not self.isVisible():
                self._stale = True
                return None
            if key == self._computed_key:
                self._stale = False
                return None
        self._stale = False
        self._computed_key = key

        def work(token):
            with torch.enable_grad():  # grad mode is per thread
                pic = read_image(path)
                r = compute_saliency(lm, [pic], method=s["method"], target=s["target"], samples=s["samples"],
                                     seed=s["seed"], cancel=token, views=s["views"], scales=s["scales"])
            return {**s, "requested_target": s["target"], "path": path, "picture": pic, "map": r.maps[0].clone(),
                    "target": r.targets[0], "predicted": r.predicted[0], "probs": r.probs[0].clone(),
                    "class": r.class_name(0, lm.classes)}

        return self.runner.submit(work, self._on_result, self._error, title=f"Saliency: {path.name}")

    def _on_result(self, res) -> None:
        self.last_result = res
        self.render()

    def _error(self, error: BaseException) -> None:
        msg = error_message(error)
        self.errors.append(msg)
        self.info.setText(msg)
        self._update_buttons()

    # -- display ------------------------------------------------------------------------------------
    def render(self, *_args) -> None:
        th = self.threshold.value() / 100.0
        self.threshold_label.setText(f"{th:.2f}")
        res = self.last_result
        if res is None:
            return
        box = saliency_box(res["map"], th) if self.show_box.isChecked() else None
        arr = overlay(res["picture"], res["map"], self.opacity.value() / 100.0, self.colormap.currentText(), box,
                      threshold=th if self.mask_below.isChecked() else None)
        res["box"] = box
        res["overlay"] = arr
        self.image.set_image(arr)
        p = float(res["probs"][res["target"]])
        pred = self.model.classes[res["predicted"]] if self.model and self.model.classes else res["predicted"]
        self.info.setText(f"{res['path'].name}: {res['method']} saliency for class {res['class']} "
                          f"(p = {p:.2f}; predicted {pred}); box {box}")
