"""Colour ops. Refused on categorical pictures: their values are labels, not intensities.

Semantics follow torchvision v2 on uint8 images (including its truncation to uint8 after each
adjustment), so recipes move between the two without surprises. Speed:

* pointwise ops with no image statistics (brightness, gamma, invert, posterize, solarize) are one
  256-entry lookup table on the uint8 pixels;
* ``color_jitter`` runs its adjustments in one float32 pass over the pixels (one conversion in, one out);
* statistics (contrast's mean grey) are integer sums, so results are byte-identical for any number of
  threads.

*Pointwise* ops (``PointwiseOp``: each output pixel depends only on that input pixel and on an
image-wide statistic) may be moved past later geometric ops by the pipeline, so that a whole run of
geometry resamples once; the statistic is then measured on a small probe of the image at the op's
original place in the chain (``stats``) and passed to ``apply(..., stats=...)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from augstudio.core.base import seeding
from augstudio.core.kernels import cv
from augstudio.core.kernels import warp as W
from augstudio.core.kernels.color import (
    GRAY_WEIGHTS,
    adjust_hue,
    affine_lut,
    affine_table,
    apply_lut,
    apply_luts,
    bitwise,
    compose_luts,
    gamma_lut,
    gamma_table,
    gray_mean,
    grayscale,
    histograms,
    levels,
    saturate,
)
from augstudio.core.kernels.filters import gaussian_blur, sharpen

from .base import Op, PointwiseOp
from .params import Param
from .registry import register


def split_alpha(x, kind):
    """Colour ops act on colour channels only; alpha is carried through untouched."""
    if kind == "rgba" or (x.shape[-3] == 4):
        return x[..., :3, :, :], x[..., 3:, :, :]
    return x, None


def join_alpha(x, alpha):
    return x if alpha is None else torch.cat([x, alpha], dim=-3)


def _gray_float(x: torch.Tensor) -> torch.Tensor:
    """torchvision's grey (float, not yet truncated) of ``... x 3 x H x W`` float values."""
    r, g, b = x.unbind(-3)
    return (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(-3)


def mean_gray(x: torch.Tensor) -> float:
    """Mean of torchvision's floored grey image, as an exact sum (whole numbers in float64: the same for
    any thread count)."""
    return gray_mean(x)


class ColorOp(Op):
    family = "color"
    categorical = "refuse"


class LutOp(PointwiseOp, ColorOp):
    """A pointwise op that is one lookup table: ``lut(params, device) -> 256 uint8 values`` (a tensor on
    ``device``; for the CPU it may be a numpy array, which ``apply_lut`` takes as it is)."""

    def lut(self, params, device):
        raise NotImplementedError

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        return join_alpha(apply_lut(x, self.lut(params, cv.device_of(x))), alpha)


# -- the float32 kernels of colour jitter (torchvision uint8 semantics: truncate after each step) ------------
def _k_brightness(x, f, stats=None):
    return x.mul_(f).clamp_(0, 255).floor_()


def _k_contrast(x, f, mean):
    return x.mul_(f).add_(mean * (1.0 - f)).clamp_(0, 255).floor_()


def _k_saturation(x, f):
    if x.shape[-3] != 3:
        return x
    g = _gray_float(x).floor_().mul_(1.0 - f)  # in place: the same products as g * (1 - f)
    return x.mul_(f).add_(g).clamp_(0, 255).floor_()


def _k_hue(x, h):
    if x.shape[-3] != 3:
        return x
    return adjust_hue(x.to(torch.uint8), h).to(torch.float32)


def _float_mean_gray(x) -> float:
    if x.shape[-3] == 3:
        g = _gray_float(x).floor_()
    else:
        g = x
    return int(g.to(torch.int32).sum(dtype=torch.int64).item()) / float(g.numel())


def _run_sequence(x, seq, means=None, record=False):
    """Run [(name, value)] float kernels; contrast uses ``means`` (in order) or measures its own."""
    used = []
    means = list(means or [])
    for name, v in seq:
        if name == "brightness":
            x = _k_brightness(x, v)
        elif name == "contrast":
            m = means.pop(0) if means else _float_mean_gray(x)
            used.append(m)
            x = _k_contrast(x, v, m)
        elif name == "saturation":
            x = _k_saturation(x, v)
        elif name == "hue":
            x = _k_hue(x, v)
    return (x, used) if record else x


def _lut_brightness(f, device):  # a numpy table for the CPU (apply_lut / compose_luts take either)
    return affine_table(f, None) if cv.on_cpu(device) else affine_lut(f, None, device)


def _lut_contrast(f, mean, device):
    return affine_table(f, mean * (1.0 - f)) if cv.on_cpu(device) else affine_lut(f, mean * (1.0 - f), device)


def _run_uint8(x, seq, means=None, record=False, finish=True):
    """Run [(name, value)] on uint8 ``C x H x W`` (no alpha): runs of brightness / contrast become one
    lookup table (each the exact table of the float kernel above; contrast measures the image as it is at
    its step unless ``means`` gives it), saturation and hue their colour kernels. ``record``: also return
    the contrast means used (``finish=False``: only those; the last tables are not applied)."""
    means = list(means or [])
    used = []
    lut = None  # composed tables not applied yet

    def flush(x, lut):
        return x if lut is None else apply_lut(x, lut)

    for k, (name, v) in enumerate(seq):
        if name == "brightness":
            t = _lut_brightness(v, cv.device_of(x))
        elif name == "contrast":
            if not means:
                x, lut = flush(x, lut), None
            # finish=False measures a probe: its statistic only, and no table after the last mean
            m = means.pop(0) if means else mean_gray(x)
            used.append(m)
            if not finish and k == len(seq) - 1:
                break
            t = _lut_contrast(v, m, cv.device_of(x))
        else:
            if x.shape[-3] == 3:
                x, lut = flush(x, lut), None
                x = saturate(x, v) if name == "saturation" else adjust_hue(x, v)
            continue
        lut = t if lut is None else compose_luts(lut, t)
    x = flush(x, lut) if finish else x
    return (x, used) if record else x


class SequenceOp(PointwiseOp, ColorOp):
    """A colour op that is a sequence of brightness / contrast / saturation / hue adjustments."""

    def sequence(self, params) -> list[tuple[str, float]]:
        raise NotImplementedError

    def needs_stats(self, params):
        return any(n == "contrast" for n, _ in self.sequence(params))

    def stats(self, x, params, kind):
        x, _ = split_alpha(x, kind)
        seq = self.sequence(params)
        last = max((i for i, (n, _) in enumerate(seq) if n == "contrast"), default=-1)
        # only the adjustments up to the last contrast affect the measured means
        if cv.active(x):
            _, used = _run_uint8(x, seq[:last + 1], record=True, finish=False)
        else:
            _, used = _run_sequence(x.to(torch.float32), seq[:last + 1], record=True)
        return {"means": used}

    def apply(self, x, params, kind, stats=None):
        """On uint8: brightness / contrast runs as lookup tables (exact), saturation and hue by their
        colour kernels (measured: several times faster than one float32 pass over the pixels)."""
        seq = self.sequence(params)
        if x.is_floating_point():
            x = W.to_uint8(x)
        if not seq:
            return x
        x, alpha = split_alpha(x, kind)
        return join_alpha(_run_uint8(x, seq, stats["means"] if stats else None), alpha)

    def apply_batch(self, x, params_list, kind, stats=None):
        if x.shape[0] == 1 or cv.active(x):  # the CPU runs each item as the per-image op does
            return super().apply_batch(x, params_list, kind, stats)
        # elsewhere one float pass per distinct order, factors per item broadcast over the batch: every
        # per-item number is made as the torch form of ``apply`` makes it (Python floats, rounded to float32
        # once), so each item's bytes equal its per-image result on the same device
        out = x.clone() if x.dtype == torch.uint8 else W.to_uint8(x)
        groups: dict = {}
        for i, p in enumerate(params_list):
            groups.setdefault(tuple(n for n, _ in self.sequence(p)), []).append(i)
        for names, idx in groups.items():
            if not names:
                continue
            xs, alpha = split_alpha(x[idx], kind)
            xf = xs.to(torch.float32)
            seqs = [self.sequence(params_list[i]) for i in idx]

            def column(values):
                return torch.tensor(values, dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)

            for k, name in enumerate(names):
                fs = [s[k][1] for s in seqs]
                if name == "brightness":
                    xf = xf.mul_(column(fs)).clamp_(0, 255).floor_()
                elif name == "contrast":
                    ci = sum(1 for nm in names[:k] if nm == "contrast")
                    # measured where the step stands in the chain (fused runs), else on the image as it is
                    means = [stats[i]["means"][ci] if stats and stats[i] else _float_mean_gray(xf[j])
                             for j, i in enumerate(idx)]
                    xf = xf.mul_(column(fs)).add_(column([m * (1.0 - f) for m, f in zip(means, fs)]))
                    xf = xf.clamp_(0, 255).floor_()
                elif name == "saturation" and xf.shape[1] == 3:
                    g = _gray_float(xf).floor_().mul_(column([1.0 - f for f in fs]))
                    xf = xf.mul_(column(fs)).add_(g).clamp_(0, 255).floor_()
                elif name == "hue" and xf.shape[1] == 3:
                    xf = torch.stack([_k_hue(xf[j], f) for j, f in enumerate(fs)])
            out[idx] = join_alpha(W.to_uint8(xf), alpha)
        return out


def _factor_param(name, what, default=0.2):
    return Param(name, "range", [max(0.0, 1 - default), 1 + default], low=0.0, high=100.0, scalar="factor",
                 typical=(0.0, 3.0), help=f"{what} factor range; one number x means [max(0, 1-x), 1+x]")


class _SingleAdjust(SequenceOp):
    kernel = ""

    def sample(self, gen, size):
        return {"factor": round(seeding.uniform(gen, *self.factor), 6)}

    def sequence(self, params):
        return [(self.kernel, params["factor"])]


@register
class Brightness(_SingleAdjust):
    name = "brightness"
    kernel = "brightness"
    summary = "Multiply by a random factor: x -> f x (torchvision adjust_brightness)."
    params = (_factor_param("factor", "brightness"),)
    def apply(self, x, params, kind, stats=None):  # a lookup table: exact and fast
        x, alpha = split_alpha(x, kind)
        return join_alpha(apply_lut(x, _lut_brightness(params["factor"], cv.device_of(x))), alpha)


@register
class Contrast(_SingleAdjust):
    name = "contrast"
    kernel = "contrast"
    summary = "Blend with the mean grey level: x -> f x + (1 - f) mean (torchvision adjust_contrast)."
    params = (_factor_param("factor", "contrast"),)
    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        m = stats["means"][0] if stats else mean_gray(x)
        return join_alpha(apply_lut(x, _lut_contrast(params["factor"], m, cv.device_of(x))), alpha)


@register
class Saturation(_SingleAdjust):
    name = "saturation"
    kernel = "saturation"
    summary = "Blend each pixel with its own grey: x -> f x + (1 - f) grey(x) (0 gives grey, >1 more vivid)."
    params = (_factor_param("factor", "saturation"),)


@register
class Hue(SequenceOp):
    name = "hue"
    summary = "Rotate the hue by a random fraction of a turn (in HSV; torchvision adjust_hue)."
    params = (Param("shift", "range", [-0.1, 0.1], low=-0.5, high=0.5, scalar="symmetric",
                    help="hue shift range (fraction of a turn); one number x means [-x, x]"),)

    def sample(self, gen, size):
        return {"shift": round(seeding.uniform(gen, *self.shift), 6)}

    def sequence(self, params):
        return [("hue", params["shift"])]


@register
class ColorJitter(SequenceOp):
    name = "color_jitter"
    summary = "Random brightness, contrast, saturation and hue, applied in a random order (torchvision semantics)."
    # torchvision's forms: one number b means [max(0, 1-b), 1+b] (hue h: [-h, h]), or give the [min, max]
    # range itself; [1, 1] (hue [0, 0]) leaves that adjustment out without a draw, as torchvision's None
    params = (
        Param("brightness", "range", [1.0, 1.0], low=0.0, high=100.0, scalar="factor", typical=(0.0, 2.0),
              help="brightness factor range; one number b means [max(0, 1-b), 1+b]"),
        Param("contrast", "range", [1.0, 1.0], low=0.0, high=100.0, scalar="factor", typical=(0.0, 2.0),
              help="contrast factor range; one number c means [max(0, 1-c), 1+c]"),
        Param("saturation", "range", [1.0, 1.0], low=0.0, high=100.0, scalar="factor", typical=(0.0, 2.0),
              help="saturation factor range; one number s means [max(0, 1-s), 1+s]"),
        Param("hue", "range", [0.0, 0.0], low=-0.5, high=0.5, scalar="symmetric",
              help="hue shift range (fraction of a turn); one number h means [-h, h]"),
    )

    def sample(self, gen, size):
        order = seeding.randperm(gen, 4)
        out = {"order": order}
        for name, off in (("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.0)):
            lo, hi = getattr(self, name)
            out[name] = None if lo == hi == off else round(seeding.uniform(gen, lo, hi), 6)
        return out

    def sequence(self, params):
        names = ("brightness", "contrast", "saturation", "hue")
        return [(names[i], params[names[i]]) for i in params["order"] if params[names[i]] is not None]


@register
class Gamma(LutOp):
    name = "gamma"
    summary = "Gamma curve: x -> 255 (x / 255)^g (torchvision adjust_gamma); g < 1 brightens shadows."
    params = (Param("gamma", "range", [0.8, 1.25], low=0.01, high=100.0, typical=(0.3, 3.0), scalar="exact", help="exponent range"),)

    def sample(self, gen, size):
        return {"gamma": round(seeding.uniform(gen, *self.gamma), 6)}

    def lut(self, params, device):
        return gamma_table(params["gamma"]) if cv.on_cpu(device) else gamma_lut(params["gamma"], device)


@register
class Grayscale(PointwiseOp, ColorOp):
    name = "grayscale"
    summary = "Convert to grey (ITU-R 601-2 luma, torchvision weights); keeps 3 channels unless told not to."
    params = (Param("keep_channels", "bool", True, help="repeat the grey into R, G, B so the image stays RGB"),)

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        if x.shape[-3] == 1:
            return join_alpha(x, alpha)
        return join_alpha(grayscale(x, 3 if self.keep_channels else 1), alpha)


@register
class Invert(LutOp):
    name = "invert"
    summary = "Invert the colours: x -> 255 - x."

    def lut(self, params, device):
        return (255 - torch.arange(256, device=device)).to(torch.uint8)

    def apply(self, x, params, kind, stats=None):  # the table as one bitwise pass
        x, alpha = split_alpha(x, kind)
        return join_alpha(bitwise(x, "not"), alpha)


@register
class Posterize(LutOp):
    name = "posterize"
    summary = "Keep only the top `bits` bits of each channel (fewer colour levels)."
    params = (Param("bits", "int_range", [4, 8], low=1, high=8, scalar="exact", help="bits kept, drawn from [low, high]"),)

    def sample(self, gen, size):
        return {"bits": seeding.randint(gen, *self.bits)}

    def lut(self, params, device):
        mask = (0xFF << (8 - params["bits"])) & 0xFF
        return (torch.arange(256, device=device) & mask).to(torch.uint8)

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        return join_alpha(bitwise(x, "and", mask=(0xFF << (8 - params["bits"])) & 0xFF), alpha)


@register
class Solarize(LutOp):
    name = "solarize"
    summary = "Invert every value at or above a threshold: x -> 255 - x if x >= t."
    params = (Param("threshold", "range", [128.0, 128.0], low=0, high=256, scalar="exact",
                    help="threshold range (0..255; 256 leaves the image unchanged)"),)

    def sample(self, gen, size):
        return {"threshold": round(seeding.uniform(gen, *self.threshold), 4)}

    def lut(self, params, device):
        v = torch.arange(256, device=device)
        return torch.where(v >= params["threshold"], 255 - v, v).to(torch.uint8)

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        return join_alpha(bitwise(x, "solarize", threshold=params["threshold"]), alpha)


def per_channel_lut(x, kind, lut_of):
    """Each colour channel through its own 256-entry table ``lut_of(histogram) -> uint8 table or None``
    (None: the channel is left as it is; the histogram is the channel's int64 256-bin count, a numpy array
    on the CPU, where tables are built with numpy, else a tensor); alpha is carried through."""
    x, alpha = split_alpha(x, kind)
    hists = histograms(x)
    if x.is_cpu:
        luts = [lut_of(h) for h in hists.numpy()]  # numpy tables: apply_luts takes them as they are
    else:
        luts = [lut_of(hists[i]) for i in range(hists.shape[0])]
    return join_alpha(apply_luts(x, luts), alpha)


def equalize_lut(hist):
    """PIL's equalisation table from an integer histogram (numpy or torch), or None when the channel is left
    alone."""
    nz = hist[hist > 0]
    step = (int(hist.sum()) - int(nz[-1])) // 255 if len(nz) else 0
    if step == 0:
        return None
    if isinstance(hist, np.ndarray):
        cum = np.cumsum(hist)
        return np.concatenate([[0], (cum[:-1] + step // 2) // step]).clip(0, 255).astype(np.uint8)
    cum = torch.cumsum(hist, 0)
    lut = torch.cat([cum.new_zeros(1), (cum[:-1] + step // 2) // step]).clamp_(0, 255)
    return lut.to(torch.uint8)


def autocontrast_lut(hist):
    present = np.flatnonzero(hist) if isinstance(hist, np.ndarray) else torch.nonzero(hist).view(-1)
    if len(present) == 0:
        return None
    lo, hi = int(present[0]), int(present[-1])
    if hi == lo:
        return None
    if isinstance(hist, np.ndarray):  # the float32 products of the torch form
        t = (_LEVELS - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        return np.clip(t, 0, 255, out=t).astype(np.uint8)
    return ((levels(hist.device) - lo) * (255.0 / (hi - lo))).clamp_(0, 255).to(torch.uint8)


_LEVELS = np.arange(256, dtype=np.float32)


@register
class Equalize(ColorOp):
    name = "equalize"
    summary = "Histogram equalisation per channel (PIL / torchvision algorithm); integer histograms."

    def apply(self, x, params, kind, stats=None):
        return per_channel_lut(x, kind, equalize_lut)


@register
class AutoContrast(ColorOp):
    name = "autocontrast"
    summary = "Stretch each channel so its darkest value becomes 0 and its brightest 255."

    def apply(self, x, params, kind, stats=None):
        return per_channel_lut(x, kind, autocontrast_lut)


@register
class Sharpness(ColorOp):
    name = "sharpness"
    summary = "Blend with a smoothed copy (PIL's 3x3 smooth filter): f > 1 sharpens, f < 1 softens."
    params = (_factor_param("factor", "sharpness", 0.5),)

    def sample(self, gen, size):
        return {"factor": round(seeding.uniform(gen, *self.factor), 6)}

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        return join_alpha(sharpen(x, params["factor"]), alpha)


@register
class GaussianBlur(ColorOp):
    name = "gaussian_blur"
    summary = "Blur with a Gaussian of random sigma (reflect border; torchvision gaussian_blur)."
    params = (
        Param("sigma", "range", [0.1, 2.0], low=0.01, high=50.0, typical=(0.1, 5.0), scalar="upto", help="sigma range in pixels"),
        Param("kernel_size", "int", 0, low=0, high=201, typical=(0, 31), help="odd kernel side; 0 picks 2 ceil(3 sigma) + 1"),
    )

    def sample(self, gen, size):
        return {"sigma": round(seeding.uniform(gen, *self.sigma), 6)}

    def apply(self, x, params, kind, stats=None):
        x, alpha = split_alpha(x, kind)
        s = max(params["sigma"], 1e-3)
        k = self.kernel_size or 2 * math.ceil(3 * s) + 1
        k = k if k % 2 else k + 1
        k = min(k, 2 * (min(x.shape[-2:]) - 1) + 1) if min(x.shape[-2:]) > 1 else 1
        if k < 3:
            return join_alpha(x.clone(), alpha)
        return join_alpha(gaussian_blur(x, k, s), alpha)  # separable: two 1-D passes


__all__ = ["ColorOp", "LutOp", "SequenceOp", "split_alpha", "join_alpha", "mean_gray"]
