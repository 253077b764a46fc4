"""Geometric ops. They apply to categorical pictures with nearest resampling, so labels never change."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .. import seeding
from .base import Op, Param, register

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_MODES = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
          "bicubic": InterpolationMode.BICUBIC}

INTERP = Param("interpolation", "choice", "bilinear", choices=INTERPOLATIONS,
               help="resampling filter (categorical images always use nearest)")
FILL = Param("fill", "fill", 0, help="value for pixels that come from outside the image")


def interp_for(name: str, kind: str) -> InterpolationMode:
    return InterpolationMode.NEAREST if kind == "categorical" else _MODES[name]


def _fill_list(fill, channels: int):
    if isinstance(fill, list):
        return [float(v) for v in (fill + [fill[-1]] * channels)[:channels]]
    return [float(fill)] * channels


@register
class HFlip(Op):
    name = "hflip"
    family = "geometry"
    summary = "Mirror left-right."
    categorical = "geometric"

    def apply(self, x, params, kind):
        return x.flip(-1)


@register
class VFlip(Op):
    name = "vflip"
    family = "geometry"
    summary = "Mirror top-bottom."
    categorical = "geometric"

    def apply(self, x, params, kind):
        return x.flip(-2)


@register
class Rotate(Op):
    name = "rotate"
    family = "geometry"
    summary = "Rotate by a random angle (degrees, counter-clockwise) about the centre."
    categorical = "geometric"
    params = (
        Param("degrees", "range", [-15.0, 15.0], low=-360, high=360, scalar="symmetric",
              help="angle range in degrees; one number x means [-x, x]"),
        INTERP,
        FILL,
    )

    def sample(self, gen, size):
        return {"angle": round(seeding.uniform(gen, *self.degrees), 6)}

    def apply(self, x, params, kind):
        return F.rotate(x, params["angle"], interpolation=interp_for(self.interpolation, kind),
                        fill=_fill_list(self.fill, x.shape[-3]))


@register
class RandomResizedCrop(Op):
    name = "random_resized_crop"
    family = "geometry"
    summary = "Crop a random area and aspect ratio, then resize to a fixed size (Inception-style)."
    categorical = "geometric"
    params = (
        Param("size", "size", [224, 224], help="output [height, width]"),
        Param("scale", "range", [0.08, 1.0], low=0.0001, high=1.0, help="crop area as a fraction of the image"),
        Param("ratio", "range", [3 / 4, 4 / 3], low=0.01, high=100.0, help="crop aspect ratio (width / height)"),
        INTERP,
    )

    def sample(self, gen, size):
        # torchvision's algorithm (10 tries, then a centre crop of the nearest allowed ratio)
        h, w = size
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * seeding.uniform(gen, *self.scale)
            aspect = math.exp(seeding.uniform(gen, *log_ratio))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = seeding.randint(gen, 0, h - ch)
                left = seeding.randint(gen, 0, w - cw)
                return {"top": top, "left": left, "height": ch, "width": cw}
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return {"top": (h - ch) // 2, "left": (w - cw) // 2, "height": ch, "width": cw}

    def apply(self, x, params, kind):
        mode = interp_for(self.interpolation, kind)
        return F.resized_crop(x, params["top"], params["left"], params["height"], params["width"],
                              list(self.size), interpolation=mode, antialias=mode != InterpolationMode.NEAREST)

    def output_size(self, size, params):
        return tuple(self.size)


__all__ = ["HFlip", "VFlip", "Rotate", "RandomResizedCrop", "interp_for", "INTERPOLATIONS"]
_ = torch
