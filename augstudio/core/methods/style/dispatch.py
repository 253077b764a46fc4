"""One way to run a style method on your images: ``augstudio style``, the GUI's Style panel and the ``stylize``
recipe op go through here, so one method gives one picture wherever it runs.

``style_job(method, settings, content, styles, device, cancel)`` is a job (it yields ``Progress`` whose
preview is ``{"image", "loss"}`` and returns a ``StyleResult``):

  texture   texture synthesis from ``styles[0]`` (``optimize.texture_job``)
  transfer  Gatys style transfer of ``styles[0]`` onto ``content`` (``optimize.nst_job``)
  adain     AdaIN with a trained decoder (``settings.model``), one or more styles mixed by ``settings.mix``
  fast      a trained fast style network (``settings.model``)
  randconv  random convolutions, no weights
  stats     random style statistics, no weights (at relu4_1 of an AdaIN decoder when ``settings.model``)

``fast``, ``randconv`` and ``stats`` run exactly as the ``stylize`` op does (``common.stylize_pixels``):
stylised at most ``max_size`` pixels on the longer side, then resized back to the content's size. The
randomisers draw their parameters with the op's own draws (``randomize.draw_randconv`` / ``draw_stats``)
from ``seeding.generator(seed, stream=RANDOM_STREAM)``, so ``Stylize.sample`` with that generator and
``Stylize.apply`` give the same pixels.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from augstudio.core.base import seeding
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import ImageError, ParamError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.io.images import as_picture, read_image

from .adain import DECODER_FILE, ENCODER_FILE, adain_job, load_adain
from .common import StyleResult, stylize_pixels
from .fast import fast_stylize, load_fast
from .optimize import nst_job, texture_job
from .randomize import draw_randconv, draw_stats, randomize

METHODS = ("texture", "transfer", "adain", "fast", "randconv", "stats")
RANDOM_STREAM = "style"


@dataclass(frozen=True)
class StyleSettings:
    """Every method's settings; each method reads the ones it uses (defaults as in ``augstudio style``)."""

    seed: int = 0
    # texture / transfer: the optimisation
    iterations: int = 200
    optimizer: str = "lbfgs"
    lr: float | None = None
    pyramid: int = 1
    features: str = "random"
    weights: str = "imagenet"
    preview_every: int = 10
    size: tuple[int, int] = (256, 256)  # texture: the output's (height, width)
    init: str = "content"  # transfer: start from the content or from noise
    style_layers: tuple[str, ...] | None = None
    content_layer: str | None = None
    beta: float = 1e6  # transfer: style weight
    # transfer: content weight; adain / fast / randconv / stats: style strength 0..1
    alpha: float = 1.0
    # the longer side at most (texture: of the source read; None: any size)
    max_size: int | None = 512
    # adain / fast / stats
    model: str | None = None
    encoder: str | None = None
    mix: tuple[float, ...] | None = None  # adain: one weight per style image
    preserve_color: bool = False
    strength: float = 0.5  # stats: spread of the random statistics


def style_job(method: str, settings: StyleSettings = StyleSettings(), content=None, styles: Sequence = (),
              device=None, cancel: CancelToken | None = None):
    """Run one style method (see the module docstring). ``content`` and ``styles`` are anything
    ``read_image`` / ``to_float`` take: a path, a ``Picture``, a PIL image or a uint8 tensor."""
    check_inputs(method, settings, content, styles)
    s = settings
    cancel = cancel or CancelToken()
    styles = list(styles)
    optim = dict(features=s.features, weights=s.weights, iterations=s.iterations, optimizer=s.optimizer,
                 lr=s.lr, pyramid=s.pyramid, seed=s.seed, device=device, preview_every=s.preview_every,
                 token=cancel)
    if method == "texture":
        return (yield from texture_job(styles[0], size=tuple(s.size), max_source_size=s.max_size, **optim))
    if method == "transfer":
        return (yield from nst_job(content, styles[0], style_layers=s.style_layers, content_layer=s.content_layer,
                                   alpha=s.alpha, beta=s.beta, init=s.init, max_size=s.max_size, **optim))
    if method == "adain":
        model = load_adain(s.model, s.encoder, device)
        return (yield from adain_job(model, content, styles, s.alpha, list(s.mix) if s.mix else None,
                                     s.preserve_color, s.max_size, token=cancel))
    return (yield from _pixel_job(method, s, content, device, cancel))


def check_inputs(method: str, settings: StyleSettings, content=None, styles: Sequence = ()) -> None:
    """Refuse, before any work, a method that does not exist or inputs it lacks (``ParamError`` saying what
    to give)."""
    if method not in METHODS:
        raise ParamError(f"style method must be one of {', '.join(METHODS)}; got {method!r}")
    needs = {"texture": ("style",), "transfer": ("content", "style"), "adain": ("content", "style", "model"),
             "fast": ("content", "model")}.get(method, ("content",))
    if "content" in needs and content is None:
        raise ParamError(f"style {method}: choose a content image")
    if "style" in needs and not styles:
        raise ParamError(f"style {method}: choose a style image")
    if "model" in needs and not settings.model:
        raise ParamError(f"style {method}: choose a model file: AdaIN needs decoder.pth (train one with "
                         "`augstudio style adain-train`), fast style a model from `augstudio style fast-train`")
    if method not in ("texture", "transfer") and not 0 <= settings.alpha <= 1:
        raise ParamError(f"style {method}: alpha must be within 0 .. 1, got {settings.alpha}")
    if method == "adain" and settings.mix is not None and len(settings.mix) != len(styles):
        raise ParamError(f"style adain: give one mix weight per style image ({len(styles)}), "
                         f"got {len(settings.mix)}")


def _pixel_job(method, s: StyleSettings, content, device, cancel):
    """fast / randconv / stats: one step, the ``stylize`` op's way."""
    t0 = time.perf_counter()
    yield Progress(0, 1, f"{method}: running")
    cancel.check(method)
    dev = resolve_device(device)
    x = _rgb_pixels(content)
    if method == "fast":
        params = {"alpha": s.alpha}
        net = fast_model(s.model, str(dev))
        fn = functools.partial(fast_stylize, net, alpha=s.alpha)
    else:
        gen = seeding.generator(s.seed, stream=RANDOM_STREAM)
        params = draw_randconv(gen, s.alpha) if method == "randconv" else draw_stats(gen, s.alpha, s.strength)
        model = adain_model(s.model, str(dev)) if method == "stats" and s.model else None
        fn = functools.partial(randomize, method=method, params=params, model=model)
    with torch.no_grad():
        img = stylize_pixels(x, "rgb", s.max_size, dev, fn)
    yield Progress(1, 1, f"{method}: done", {"image": img, "loss": None})
    return StyleResult(img, [], time.perf_counter() - t0, {"method": method, "params": params})


def _rgb_pixels(image) -> torch.Tensor:
    """uint8 ``3 x H x W``: gray repeated, alpha dropped; categorical pictures refused (they hold labels)."""
    pic = read_image(image) if isinstance(image, (str, os.PathLike)) else as_picture(image)[0]
    if pic.kind == "categorical":
        raise ImageError(pic.meta.get("path"), "style methods need colour or gray images; a categorical "
                         "(palette) image holds labels, not intensities")
    x = pic.pixels
    return x.repeat(3, 1, 1) if x.shape[0] == 1 else x[:3]


# -- models, loaded once while their files stay the same ----------------------------------------------------
def file_stamp(path) -> float:
    """The file's modification time in ns (-1 when missing): a cache key that changes when the file does."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def adain_model(path: str, device: str):
    """The AdaIN model of ``path`` (decoder.pth, or the folder holding it; the encoder beside it)."""
    dec = os.path.join(path, DECODER_FILE) if os.path.isdir(path) else path
    enc = os.path.join(os.path.dirname(dec), ENCODER_FILE)
    return _adain_cached(dec, file_stamp(dec), file_stamp(enc), device)


@functools.lru_cache(maxsize=8)
def _adain_cached(path: str, mtime: float, enc_mtime: float, device: str):
    return load_adain(path, device=device)


def fast_model(path: str, device: str):
    """The fast style network of ``path``."""
    return _fast_cached(path, file_stamp(path), device)


@functools.lru_cache(maxsize=8)
def _fast_cached(path: str, mtime: float, device: str):
    return load_fast(path, device=device)

