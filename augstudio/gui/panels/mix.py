"""The mix panel: pick two images (the shown one, or a random pair from the open dataset), choose Mixup,
CutMix or PuzzleMix and its parameters, and see both saliency maps, the mask, the transported images, the
mixed image and its label weights. A lambda slider fixes lambda (else it is drawn from Beta(alpha, alpha));
Reroll draws again (next seed).

The mixing runs through ``ctx.run_job`` (core ``batch_stage.mix_pair``); QImages are built in the worker,
QPixmaps here on the GUI thread. Only the latest request's result is shown.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

VIEWS = (("a", "Image A"), ("b", "Image B"), ("sal_a", "Saliency A"), ("sal_b", "Saliency B"),
         ("mask", "Mask (A shows)"), ("transported_a", "Transported A"), ("transported_b", "Transported B"),
         ("mixed", "Mixed"))
SHOW = 150


def _qimage(x) -> QImage:
    """float (C, H, W) or (H, W) tensor in 0..1 -> an RGB QImage (owns its memory; safe to pass threads)."""
    import numpy as np

    if x.dim() == 2:
        x = x[None].expand(3, -1, -1)
    arr = (x.detach().cpu().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class MixPanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.path_a: Path | None = None
        self.path_b: Path | None = None
        self.seed = 0
        self.last_result: dict | None = None
        self.errors: list[str] = []
        self._request = 0
        self._models: dict = {}

        # -- the pair ------------------------------------------------------------------------------------
        self.a_btn = QPushButton("A = shown image")
        self.b_btn = QPushButton("B = shown image")
        self.random_btn = QPushButton("Random pair")
        self.pair_label = QLabel("pick two images")
        self.pair_label.setWordWrap(True)
        prow = QHBoxLayout()
        for w in (self.a_btn, self.b_btn, self.random_btn):
            prow.addWidget(w)

        # -- method and parameters ------------------------------------------------------------------------
        self.method = QComboBox()
        self.method.addItems(["puzzlemix", "mixup", "cutmix"])
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.01, 100.0)
        self.alpha.setValue(1.0)
        self.alpha.setSingleStep(0.1)
        self.fix_lam = QCheckBox("fixed lambda")
        self.lam_slider = QSlider(Qt.Orientation.Horizontal)
        self.lam_slider.setRange(0, 100)
        self.lam_slider.setValue(50)
        self.lam_slider.setEnabled(False)
        self.lam_label = QLabel("0.50")
        lrow = QHBoxLayout()
        lrow.addWidget(self.fix_lam)
        lrow.addWidget(self.lam_slider, 1)
        lrow.addWidget(self.lam_label)
        self.blocks = QComboBox()
        self.blocks.addItem("random 2^k (k = 1..4)", "random")
        for b in (2, 4, 8, 16):
            self.blocks.addItem(f"{b} x {b}", b)
        self.transport = QCheckBox("optimal transport")
        self.transport.setChecked(True)
        self.beta = self._spin(1.2, "label smoothness")
        self.gamma = self._spin(0.5, "data-dependent smoothness")
        self.eta = self._spin(0.2, "weight of the lambda prior")
        self.t_eps = self._spin(0.8, "transport cost coefficient")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("optional: model.pt or resnet18 (saliency); empty = image gradient")
        self.reroll_btn = QPushButton("Reroll")
        self.mix_btn = QPushButton("Mix")
        form = QFormLayout()
        form.addRow("Pair", prow)
        form.addRow("", self.pair_label)
        form.addRow("Method", self.method)
        form.addRow("alpha", self.alpha)
        form.addRow("lambda", lrow)
        form.addRow("blocks", self.blocks)
        form.addRow("", self.transport)
        form.addRow("beta", self.beta)
        form.addRow("gamma", self.gamma)
        form.addRow("eta", self.eta)
        form.addRow("t_eps", self.t_eps)
        form.addRow("model", self.model_edit)
        brow = QHBoxLayout()
        brow.addWidget(self.mix_btn)
        brow.addWidget(self.reroll_btn)
        form.addRow("", brow)
        controls = QGroupBox("Mix two images")
        controls.setLayout(form)

        # -- the pictures ---------------------------------------------------------------------------------
        grid = QGridLayout()
        self.view_labels: dict[str, QLabel] = {}
        for i, (key, title) in enumerate(VIEWS):
            box = QVBoxLayout()
            pic = QLabel()
            pic.setFixedSize(SHOW, SHOW)
            pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
            pic.setStyleSheet("background: #222;")
            box.addWidget(pic)
            cap = QLabel(title)
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box.addWidget(cap)
            grid.addLayout(box, i // 4, i % 4)
            self.view_labels[key] = pic
        self.weights_label = QLabel("—")
        self.weights_label.setWordWrap(True)
        self.weights_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        pics = QGroupBox("Result")
        pl = QVBoxLayout(pics)
        pl.addLayout(grid)
        pl.addWidget(self.weights_label)

        layout = QHBoxLayout(self)
        layout.addWidget(controls)
        layout.addWidget(pics, 1)

        self.a_btn.clicked.connect(lambda: self._take_shown("a"))
        self.b_btn.clicked.connect(lambda: self._take_shown("b"))
        self.random_btn.clicked.connect(self.random_pair)
        self.mix_btn.clicked.connect(self.compute)
        self.reroll_btn.clicked.connect(self.reroll)
        self.fix_lam.toggled.connect(self._lam_toggled)
        self.lam_slider.valueChanged.connect(self._lam_moved)
        self.method.currentTextChanged.connect(self._method_changed)
        self._method_changed(self.method.currentText())

    def _spin(self, value, tip):
        s = QDoubleSpinBox()
        s.setRange(0.0, 100.0)
        s.setDecimals(3)
        s.setSingleStep(0.1)
        s.setValue(value)
        s.setToolTip(tip)
        return s

    # -- state --------------------------------------------------------------------------------------------
    def _method_changed(self, method: str) -> None:
        pm = method == "puzzlemix"
        for w in (self.blocks, self.transport, self.beta, self.gamma, self.eta, self.t_eps, self.model_edit):
            w.setEnabled(pm)

    def _lam_toggled(self, on: bool) -> None:
        self.lam_slider.setEnabled(on)
        if self.path_a is not None and self.path_b is not None:
            self.compute()

    def _lam_moved(self, v: int) -> None:
        self.lam_label.setText(f"{v / 100:.2f}")
        if self.fix_lam.isChecked() and self.path_a is not None and self.path_b is not None:
            self.compute()

    def lam(self) -> float | None:
        return self.lam_slider.value() / 100 if self.fix_lam.isChecked() else None

    def _take_shown(self, which: str) -> None:
        p = self.ctx.current_path()
        if p is None:
            self.weights_label.setText("show an image in the browser first")
            return
        self.set_pair(p if which == "a" else self.path_a, p if which == "b" else self.path_b)

    def random_pair(self) -> None:
        import random

        ds = self.ctx.dataset()
        if ds is None or len(ds.items) < 2:
            self.weights_label.setText("open a dataset with at least two images for a random pair")
            return
        rng = random.Random(self.seed)  # a local generator: the global RNG is never touched
        i, j = rng.sample(range(len(ds.items)), 2)
        self.seed += 1
        self.set_pair(ds.abspath(ds.items[i]), ds.abspath(ds.items[j]))

    def set_pair(self, a, b) -> None:
        self.path_a = Path(a) if a is not None else None
        self.path_b = Path(b) if b is not None else None
        names = [p.name if p else "—" for p in (self.path_a, self.path_b)]
        self.pair_label.setText(f"A: {names[0]}    B: {names[1]}")
        if self.path_a is not None and self.path_b is not None:
            self.compute()

    def reroll(self) -> None:
        self.seed += 1
        self.compute()

    def _name(self, path: Path) -> str:
        ds = self.ctx.dataset()
        if ds is not None:
            try:
                rel = path.resolve().relative_to(Path(ds.root).resolve()).as_posix()
            except ValueError:
                rel = None
            for it in ds.items:
                if it.path == rel and it.class_name:
                    return it.class_name
        return path.stem

    # -- work ---------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        method = self.method.currentText()
        values = {"alpha": float(self.alpha.value())}
        if method == "puzzlemix":
            values.update(block_num=self.blocks.currentData(), transport=self.transport.isChecked(),
                          beta=float(self.beta.value()), gamma=float(self.gamma.value()),
                          eta=float(self.eta.value()), t_eps=float(self.t_eps.value()))
        return {"method": method, "lam": self.lam(), "seed": self.seed, "values": values,
                "model": self.model_edit.text().strip() if method == "puzzlemix" else ""}

    def compute(self):
        if self.path_a is None or self.path_b is None:
            self.weights_label.setText("pick two images first")
            return None
        self._request += 1
        req = self._request
        a, b = self.path_a, self.path_b
        cfg = self.settings()
        device = self.ctx.device()
        models = self._models

        def work(token):
            from augstudio.core.engine.mixing import heat, mix_pair, mixable
            from augstudio.core.io.images import read_image

            xa = mixable(read_image(a))
            xb = mixable(read_image(b))
            model = None
            if cfg["model"]:
                if cfg["model"] not in models:
                    from augstudio.core.models.loading import load_model

                    models[cfg["model"]] = load_model(cfg["model"], device=device)
                model = models[cfg["model"]]
                xa, xb = xa.to(model.device), xb.to(model.device)
            token.check("mix")
            res = mix_pair(xa, xb, cfg["method"], lam=cfg["lam"], seed=cfg["seed"], model=model, **cfg["values"])
            if xb.shape[-2:] != xa.shape[-2:]:
                import torch

                xb = torch.nn.functional.interpolate(xb[None], size=xa.shape[-2:], mode="bilinear",
                                                     align_corners=False, antialias=True)[0]
            images = {"a": _qimage(xa), "b": _qimage(xb), "mask": _qimage(res["mask"]),
                      "mixed": _qimage(res["mixed"])}
            if "sal_a" in res:
                images.update(sal_a=_qimage(heat(res["sal_a"])), sal_b=_qimage(heat(res["sal_b"])),
                              transported_a=_qimage(res["transported_a"]),
                              transported_b=_qimage(res["transported_b"]))
            return {"request": req, "images": images, "weights": res["weights"], "params": res["params"],
                    "mixed": res["mixed"].detach().cpu().clone(), "settings": cfg}

        return self.ctx.run_job(f"mix ({cfg['method']})", work, on_result=self._show, on_error=self._failed)

    def _failed(self, message: str) -> None:
        self.errors.append(message)
        self.weights_label.setText(f"mix failed: {message}")

    def _show(self, result) -> None:
        if not isinstance(result, dict) or result.get("request") != self._request:
            return  # an older request finished late
        self.last_result = result
        for key, lab in self.view_labels.items():
            img = result["images"].get(key)
            if img is None:
                lab.clear()
                lab.setText("—")
                continue
            lab.setPixmap(QPixmap.fromImage(img).scaled(SHOW, SHOW, Qt.AspectRatioMode.KeepAspectRatio,
                                                        Qt.TransformationMode.FastTransformation))
        wa, wb = result["weights"]
        p = result["params"]
        extra = ""
        if "block_num" in p:
            extra = f"; {p['block_num']} x {p['block_num']} blocks"
        if "box" in p:
            extra = f"; box rows {p['box'][0]}..{p['box'][1]}, cols {p['box'][2]}..{p['box'][3]}"
        self.weights_label.setText(
            f"label = {wa:.3f} × {self._name(self.path_a)} + {wb:.3f} × {self._name(self.path_b)} "
            f"(lambda {p['lam']:.3f}{extra}; seed {result['settings']['seed']})")
