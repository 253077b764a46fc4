"""The saliency panel: a gradient heat map over the current image, with the localisation box.

* Model: the probe classifier of the open dataset (reused when saved; "Train probe" trains it as a job)
  or a model file the user picks (checkpoint; TorchScript only after an explicit yes).
* Method (vanilla / SmoothGrad / gradient x input) and target class (predicted, or one class). Computing
  is a job (``core.saliency.compute_saliency``); a newer request supersedes an older one.
* Display: opacity, colormap and threshold act on the stored map at once (no recomputation): the
  threshold hides the heat map below it and sets the box (largest region above it, ``saliency_box``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)


def _qimage(arr: np.ndarray) -> QImage:
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


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
        from augstudio.core.methods.saliency import COLORMAPS, DEFAULT_THRESHOLD, LOCALISE, METHODS

        self.ctx = ctx
        self.model = None  # LoadedModel
        self.model_label_text = ""
        self.probe_kwargs: dict = {}  # passed to train_probe_job / find_probe (tests shrink it)
        self.last_result: dict | None = None
        self.errors: list[str] = []
        self._request = 0
        self._path: Path | None = None
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
        self.image = QLabel("open a dataset and select an image")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(256, 256)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Model:"))
        row1.addWidget(self.model_info, 1)
        row1.addWidget(self.train_btn)
        row1.addWidget(self.file_btn)
        row2 = QHBoxLayout()
        for label, w in (("Method", self.method), ("Target", self.target)):
            row2.addWidget(QLabel(label))
            row2.addWidget(w)
        row2.addWidget(self.views)
        row2.addWidget(self.multiscale)
        row2.addWidget(self.compute_btn)
        row2.addStretch(1)
        row3 = QHBoxLayout()
        row3.addWidget(QLabel("Opacity"))
        row3.addWidget(self.opacity)
        row3.addWidget(QLabel("Colormap"))
        row3.addWidget(self.colormap)
        row3.addWidget(QLabel("Threshold"))
        row3.addWidget(self.threshold)
        row3.addWidget(self.threshold_label)
        row3.addWidget(self.show_box)
        row3.addWidget(self.mask_below)
        row3.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addLayout(row3)
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
        if ds is None:
            return
        from augstudio.core.workflows.probe import find_probe

        saved = find_probe(ds, **self.probe_kwargs)
        if saved is not None and self.model is None:
            self._load_model_file(saved, probe_for=str(ds.root))

    def _item_changed(self, _item) -> None:
        self._update_buttons()
        self.compute()

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
        from augstudio.core.workflows.probe import train_probe_job

        kw = dict(self.probe_kwargs)
        device = self.ctx.device()
        self.model_info.setText("training the probe… (see Jobs)")
        self.train_btn.setEnabled(False)

        def done(res):
            self.info.setText(res.line())
            self._load_model_file(res.path, probe_for=str(ds.root))

        return self.ctx.run_job("Train probe classifier",
                                lambda token: train_probe_job(ds, device=device, cancel=token, **kw),
                                on_result=done, on_error=self._error)

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
        from augstudio.core.models.loading import _is_torchscript

        path = Path(path)
        allow = False
        if path.is_file() and _is_torchscript(path):
            if not self.confirm_code(path):
                return
            allow = True
        self._load_model_file(path, allow_code=allow)

    def _load_model_file(self, path, allow_code: bool = False, probe_for: str | None = None) -> None:
        from augstudio.core.base.errors import ModelError
        from augstudio.core.models.loading import load_model

        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the user already confirmed TorchScript
                lm = load_model(path, device=self.ctx.device(), allow_code=allow_code)
        except ModelError as e:
            self._error(str(e))
            return
        if probe_for is not None:
            lm.meta["probe_for"] = probe_for
        self._set_model(lm)
        self.compute()

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
            acc = lm.meta.get("val_accuracy")
            kind = "probe" if lm.meta.get("probe_for") else lm.source
            extra = f", validation accuracy {acc:.1%}" if isinstance(acc, float) and acc == acc else ""
            self.model_info.setText(f"{kind}: {lm.name}{extra}")
        else:
            self.model_info.setText("no model yet: train the probe or pick a model file")
        self.target.blockSignals(False)
        self._update_buttons()

    # -- compute ------------------------------------------------------------------------------------
    def settings(self) -> dict:
        from augstudio.core.methods.saliency import LOCALISE

        return {"method": self.method.currentText(), "target": self.target.currentData(), "seed": 0, "samples": 16,
                "views": "d4" if self.views.isChecked() else "none",
                "scales": tuple(LOCALISE["scales"]) if self.multiscale.isChecked() else (1.0,)}

    def compute(self):
        path = self._current_path()
        if self.model is None or path is None:
            return None
        from augstudio.core.io.images import read_image
        from augstudio.core.methods.saliency import compute_saliency

        self._request += 1
        req = self._request
        lm = self.model
        s = self.settings()

        def work(token):
            import torch

            with torch.enable_grad():
                pic = read_image(path)
                r = compute_saliency(lm, [pic], method=s["method"], target=s["target"], samples=s["samples"],
                                     seed=s["seed"], cancel=token, views=s["views"], scales=s["scales"])
            return {**s, "requested_target": s["target"], "request": req, "path": path, "picture": pic, "map": r.maps[0].clone(),
                    "target": r.targets[0], "predicted": r.predicted[0], "probs": r.probs[0].clone(),
                    "class": r.class_name(0, lm.classes)}

        return self.ctx.run_job(f"Saliency: {path.name}", work, on_result=self._on_result, on_error=self._error)

    def _on_result(self, res) -> None:
        if res["request"] != self._request:
            return  # superseded by a newer request
        self.last_result = res
        self.render()

    def _error(self, msg: str) -> None:
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
        from augstudio.core.methods.saliency import overlay, saliency_box

        box = saliency_box(res["map"], th) if self.show_box.isChecked() else None
        arr = overlay(res["picture"], res["map"], self.opacity.value() / 100.0, self.colormap.currentText(), box,
                      threshold=th if self.mask_below.isChecked() else None)
        res["box"] = box
        res["overlay"] = arr
        qimg = _qimage(arr)
        size = self.image.size()
        pm = QPixmap.fromImage(qimg)
        if size.width() > 8 and size.height() > 8:
            pm = pm.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        self.image.setPixmap(pm)
        p = float(res["probs"][res["target"]])
        pred = self.model.classes[res["predicted"]] if self.model and self.model.classes else res["predicted"]
        self.info.setText(f"{res['path'].name}: {res['method']} saliency for class {res['class']} "
                          f"(p = {p:.2f}; predicted {pred}); box {box}")

    def resizeEvent(self, event):  # keep the picture fitted
        super().resizeEvent(event)
        if self.last_result is not None and "overlay" in self.last_result:
            self.render()
