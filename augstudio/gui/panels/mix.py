"""The mix panel: pick two images (the shown one, or a random pair from the open dataset), choose Mixup,
CutMix or PuzzleMix and its parameters, and see both saliency maps, the mask, the transported images, the
mixed image and its label weights. A lambda slider fixes lambda (else it is drawn from Beta(alpha, alpha));
Reroll draws again (next seed).

The parameter form is made from the batch op's own ``Param`` declarations (the chain editor's field
factory). PuzzleMix's optional saliency model comes from the shared model-loading job (``ctx.models``).
Mixing (core ``engine.mixing.mix_pair``) runs on a latest-wins runner listed in the Jobs panel: a newer
request cancels an older one, whose result is dropped. QImages are built in the worker, QPixmaps here.

Image B keeps its aspect ratio: it is scaled to cover A's size and its centre is cut out (what a
``random_resized_crop`` to a fixed size does in training), never stretched. The views share the room
they get (``TileGrid``); the controls scroll when the window is short.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.engine.mixing import heat, mix_pair, mixable
from augstudio.core.io.images import read_image
from augstudio.core.ops.registry import get_batch_op
from augstudio.gui.qt.images import to_qimage
from augstudio.gui.qt.models import ModelRequest
from augstudio.gui.qt.workers import error_message
from augstudio.gui.widgets.image_view import TileGrid
from augstudio.gui.widgets.params import ParamForm

METHODS = ("puzzlemix", "mixup", "cutmix")
VIEWS = (("a", "Image A"), ("b", "Image B"), ("sal_a", "Saliency A"), ("sal_b", "Saliency B"),
         ("mask", "Mask (A shows)"), ("transported_a", "Transported A"), ("transported_b", "Transported B"),
         ("mixed", "Mixed"))
CONTROLS_WIDTH = 290


def fit_cover(x, size):
    """``x`` (float C x H x W) scaled to cover ``size`` (h, w) with its aspect ratio kept, then its centre
    cut to exactly ``size``."""
    h, w = size
    xh, xw = x.shape[-2:]
    if (xh, xw) == (h, w):
        return x
    scale = max(h / xh, w / xw)
    nh, nw = max(h, round(xh * scale)), max(w, round(xw * scale))
    y = torch.nn.functional.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False,
                                        antialias=True)[0]
    top, left = (nh - h) // 2, (nw - w) // 2
    return y[:, top:top + h, left:left + w].contiguous()


def mix_images(path_a: Path, path_b: Path, cfg: dict, model, token) -> dict:
    """The work of one request (on a pool thread): both images mixed, with QImages of every view. B is
    fitted to A's size keeping its aspect ratio (``fit_cover``)."""
    xa = mixable(read_image(path_a))
    xb = mixable(read_image(path_b))
    reshaped = xb.shape[-2:] != xa.shape[-2:]
    xb = fit_cover(xb, tuple(xa.shape[-2:]))
    if model is not None:
        xa, xb = xa.to(model.device), xb.to(model.device)
    token.check("mix")
    res = mix_pair(xa, xb, cfg["method"], lam=cfg["lam"], seed=cfg["seed"], model=model, **cfg["values"])
    res["params"]["b_fitted"] = bool(reshaped)
    images = {"a": to_qimage(xa), "b": to_qimage(xb), "mask": to_qimage(res["mask"]),
              "mixed": to_qimage(res["mixed"])}
    if "sal_a" in res:
        images.update(sal_a=to_qimage(heat(res["sal_a"])), sal_b=to_qimage(heat(res["sal_b"])),
                      transported_a=to_qimage(res["transported_a"]), transported_b=to_qimage(res["transported_b"]))
    return {"images": images, "weights": res["weights"], "params": res["params"],
            "mixed": res["mixed"].detach().cpu().clone(), "settings": cfg}


class MixPanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.path_a: Path | None = None
        self.path_b: Path | None = None
        self.seed = 0
        self.last_result: dict | None = None
        self.errors: list[str] = []
        self.runner = ctx.latest(listed=True)
        self._wanted: dict | None = None  # the settings of the newest request (its model may still be loading)

        # -- the pair ------------------------------------------------------------------------------------
        self.a_btn = QPushButton("A = shown")
        self.a_btn.setToolTip("image A: the image shown in the browser")
        self.b_btn = QPushButton("B = shown")
        self.b_btn.setToolTip("image B: the image shown in the browser (fitted to A's size, aspect kept)")
        self.random_btn = QPushButton("Random pair")
        self.pair_label = QLabel("pick two images")
        self.pair_label.setWordWrap(True)
        prow = QGridLayout()
        prow.addWidget(self.a_btn, 0, 0)
        prow.addWidget(self.b_btn, 0, 1)
        prow.addWidget(self.random_btn, 1, 0, 1, 2)

        # -- method, lambda and the op's parameters -----------------------------------------------------
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
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
        self.form = ParamForm(())
        self.reroll_btn = QPushButton("Reroll")
        self.mix_btn = QPushButton("Mix")
        top = QFormLayout()
        top.addRow("Pair", prow)
        top.addRow("", self.pair_label)
        top.addRow("Method", self.method)
        top.addRow("lambda", lrow)
        brow = QHBoxLayout()
        brow.addWidget(self.mix_btn)
        brow.addWidget(self.reroll_btn)
        controls = QGroupBox("Mix two images")
        self.controls = QVBoxLayout(controls)
        self.controls.addLayout(top)
        self.controls.addWidget(self.form)
        self.controls.addLayout(brow)
        self.controls.addStretch(1)
        scroll = QScrollArea()  # PuzzleMix has ten parameters: on a short screen they scroll
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(controls)
        scroll.setFixedWidth(CONTROLS_WIDTH)
        controls.setMaximumWidth(CONTROLS_WIDTH - 14)

        # -- the pictures ---------------------------------------------------------------------------------
        self.tiles = TileGrid(list(VIEWS))
        self.view_labels = self.tiles.views
        self.weights_label = QLabel("—")
        self.weights_label.setWordWrap(True)
        self.weights_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        pics = QGroupBox("Result")
        pl = QVBoxLayout(pics)
        pl.addWidget(self.tiles, 1)
        pl.addWidget(self.weights_label)

        layout = QHBoxLayout(self)
        layout.addWidget(scroll)
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

    # -- state --------------------------------------------------------------------------------------------
    def _method_changed(self, method: str) -> None:
        """A new form from the op's declarations; values of parameters the methods share (alpha) stay."""
        form = ParamForm(get_batch_op(method).params, self.form.values)
        self.controls.replaceWidget(self.form, form)
        self.form.hide()  # at once; deleted when the event loop next runs
        self.form.deleteLater()
        self.form = form

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
        values = dict(self.form.values)
        model = values.pop("model", None) or ""
        return {"method": self.method.currentText(), "lam": self.lam(), "seed": self.seed, "values": values,
                "model": model.strip()}

    def compute(self) -> None:
        """Mix the pair with the current settings (after loading PuzzleMix's model, when one is named)."""
        if self.path_a is None or self.path_b is None:
            self.weights_label.setText("pick two images first")
            return
        cfg = self._wanted = self.settings()
        if not cfg["model"]:
            self._submit(cfg, None)
        else:
            self.ctx.models.load(ModelRequest(cfg["model"]), lambda lm: self._submit(cfg, lm), self._failed)

    def _submit(self, cfg: dict, model) -> None:
        if cfg is not self._wanted:
            return  # newer settings were asked for while this model loaded
        a, b = self.path_a, self.path_b
        self.runner.submit(lambda token: mix_images(a, b, cfg, model, token), self._show, self._failed,
                                  title=f"mix ({cfg['method']})")

    def _failed(self, error: BaseException) -> None:
        message = error_message(error)
        self.errors.append(message)
        self.weights_label.setText(f"mix failed: {message}")

    def _show(self, result: dict) -> None:
        self.last_result = result
        for key, view in self.view_labels.items():
            view.set_image(result["images"].get(key))
        wa, wb = result["weights"]
        p = result["params"]
        extra = ""
        if "block_num" in p:
            extra = f"; {p['block_num']} x {p['block_num']} blocks"
        if "box" in p:
            extra = f"; box rows {p['box'][0]}..{p['box'][1]}, cols {p['box'][2]}..{p['box'][3]}"
        fitted = "; B scaled and centre-cropped to A's size" if p.get("b_fitted") else ""
        self.weights_label.setText(
            f"label = {wa:.3f} × {self._name(self.path_a)} + {wb:.3f} × {self._name(self.path_b)} "
            f"(lambda {p['lam']:.3f}{extra}; seed {result['settings']['seed']}{fitted})")
