"""Style augmentation as a recipe step (``stylize``), so ``augstudio export`` can build a stylised dataset.

Methods:
  adain     AdaIN with one random style image per item from a style bank folder (Stylized-ImageNet,
            Geirhos et al.); ``model`` names decoder.pth (vgg_normalised.pth next to it)
  fast      a fast style network (``augstudio style fast-train``); ``model`` is one file, or a folder of
            them (one random model per item)
  randconv  random convolutions (RandConv, Xu et al. ICLR 2021), no weights
  stats     AdaIN with random style statistics, no weights (Laplacian pyramid), or at relu4_1 when
            ``model`` names an AdaIN decoder

``sample`` draws the choice (style file, model file, kernel size, mix, seed) as plain data, so a recipe
replays exactly; ``apply`` is deterministic.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from augstudio.core.base import seeding
from augstudio.core.base.errors import ModelError, ParamError
from augstudio.core.io.images import IMAGE_EXTENSIONS
from augstudio.core.methods.style.common import stylize_pixels, to_float
from augstudio.core.methods.style.dispatch import adain_model, fast_model, file_stamp
from augstudio.core.methods.style.fast import fast_stylize
from augstudio.core.methods.style.randomize import RANDOMIZERS, draw_randconv, draw_stats, randomize

from .base import Op
from .params import Param
from .registry import register

METHODS = ("adain", "fast", "randconv", "stats")


@functools.lru_cache(maxsize=64)
def _listing(folder: str, mtime: float, suffixes: tuple) -> tuple[str, ...]:
    root = Path(folder)
    return tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                        if p.is_file() and p.name.lower().endswith(suffixes)))


def _files(folder: str, suffixes: tuple, what: str) -> tuple[str, ...]:
    p = Path(folder)
    if not p.is_dir():
        raise ParamError(f"parameter '{what}': '{folder}' is not a folder")
    names = _listing(str(p.resolve()), p.stat().st_mtime, suffixes)
    if not names:
        raise ParamError(f"parameter '{what}': folder '{folder}' holds no {'/'.join(suffixes)} files")
    return names


@functools.lru_cache(maxsize=32)
def _style_image(path: str, mtime: float, max_size: int, device: str):
    return to_float(path, device, max_size)


@register
class Stylize(Op):
    name = "stylize"
    family = "style"
    summary = ("Style augmentation: AdaIN with a random style from a bank, a trained fast style network, "
               "random convolutions (RandConv) or random style statistics.")
    categorical = "refuse"
    categorical_reason = ("its values are category labels, and style transfer invents new intensities "
                          "and textures")
    params = (
        Param("method", "choice", "randconv", choices=METHODS,
              help="adain (style bank + decoder), fast (trained network), randconv or stats (no weights)"),
        Param("bank", "path", None, optional=True, help="adain: folder of style images; one is drawn per item"),
        Param("model", "path", None, optional=True,
              help="adain/stats: decoder.pth (vgg_normalised.pth beside it); fast: a model file or a folder"),
        Param("alpha", "float", 1.0, low=0.0, high=1.0,
              help="style strength: 1 = fully stylised, 0 = the input (randconv: mix drawn from [1-alpha, 1])"),
        Param("strength", "float", 0.5, low=0.0, high=3.0, help="stats: spread of the random statistics"),
        Param("max_size", "int", 512, low=32, high=4096, typical=(64, 1024),
              help="stylise at most this many pixels on the longer side, then resize back"),
    )

    @classmethod
    def check(cls, values, where=""):
        m = values["method"]
        if m == "adain" and (not values["bank"] or not values["model"]):
            raise ParamError(f"{where}op 'stylize' with method adain needs 'bank' (a folder of style images) "
                             "and 'model' (decoder.pth; train one with `augstudio style adain-train`)")
        if m == "fast" and not values["model"]:
            raise ParamError(f"{where}op 'stylize' with method fast needs 'model' (a file made by "
                             "`augstudio style fast-train`, or a folder of them)")
        for key in ("bank", "model"):
            v = values[key]
            if v and not os.path.exists(v):
                hint = ("train a decoder with `augstudio style adain-train CONTENT_DIR STYLE_DIR --out DIR`"
                        if m in ("adain", "stats") and key == "model" else
                        "train one with `augstudio style fast-train CONTENT_DIR STYLE_IMAGE --out FILE`"
                        if key == "model" else "make a folder of style images")
                raise ParamError(f"{where}op 'stylize': parameter '{key}': '{v}' does not exist; {hint}")

    def sample(self, gen, size):
        m = self.method
        if m == "randconv":
            return draw_randconv(gen, self.alpha)
        if m == "stats":
            return draw_stats(gen, self.alpha, self.strength)
        seeding.randint(gen, 0, 2**31 - 1)  # every method draws a seed first: adain / fast draws stay as they were
        if m == "adain":
            names = _files(self.bank, IMAGE_EXTENSIONS, "bank")
            return {"style": names[seeding.choice(gen, len(names))], "alpha": self.alpha}
        if os.path.isdir(self.model):
            names = _files(self.model, (".pth", ".pt"), "model")
            return {"model": names[seeding.choice(gen, len(names))], "alpha": self.alpha}
        return {"model": None, "alpha": self.alpha}

    def apply(self, x, params, kind):
        dev = x.device  # the device of the input, as every op: nothing picks CUDA behind the caller's back
        return stylize_pixels(x, kind, self.max_size, dev, functools.partial(self._run, params=params, dev=dev))

    def _run(self, x, params, dev):
        m = self.method
        if m in RANDOMIZERS:
            model = adain_model(self.model, str(dev)) if m == "stats" and self.model else None
            return randomize(x, m, params, model)
        if m == "fast":
            path = self.model if params["model"] is None else os.path.join(self.model, params["model"])
            return fast_stylize(fast_model(path, str(dev)), x, params["alpha"])
        # adain
        style_path = os.path.join(self.bank, params["style"])
        if not os.path.isfile(style_path):
            raise ModelError(f"op 'stylize': style image '{style_path}' is gone from the bank; re-run the export")
        model = adain_model(self.model, str(dev))
        style = _style_image(style_path, file_stamp(style_path), self.max_size, str(dev))
        return model.stylize(x, [style], params["alpha"])
