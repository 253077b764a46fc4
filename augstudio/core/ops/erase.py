"""Erasing ops: hide parts of the image so a model cannot rely on one region.

Boxes are drawn in ``sample`` and recorded as plain data ([top, left, height, width] in pixels of the image
the op sees). On categorical pictures the erased area takes the ``fill`` value, which must then be a
category of the image (for wafer maps 0, off-wafer); ``random`` values are refused there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.kernels import noise

from .base import Op
from .params import Param
from .registry import register

VALUE = Param("value", "choice", "fill", choices=("fill", "random"),
              help="fill: the fill value; random: per-pixel random colours (drawn from a recorded seed)")
FILL = Param("fill", "fill", 0, help="value of erased pixels (categorical images: a category, e.g. 0 off-wafer)")


class EraseOp(Op):
    family = "erase"
    categorical = "custom"

    def boxes(self, params) -> list[list[int]]:
        return params["boxes"]

    def apply(self, x, params, kind):
        # on the CPU numpy makes the copy: its memory is reused call to call (torch.empty's fresh pages cost)
        out = torch.from_numpy(x.numpy().copy()) if x.is_cpu else x.clone()
        c = x.shape[-3]
        random = self.values.get("value", "fill") == "random"
        if random and kind == "categorical":
            raise RecipeError(f"op '{self.name}': value 'random' would invent categories on a categorical "
                              "image; use value: fill with a category (e.g. fill: 0)")
        fills = self.fill if isinstance(self.fill, list) else [self.fill]
        fills = [int(round(v)) for v in (fills + [fills[-1]] * c)[:c]]
        boxes = [b for b in self.boxes(params) if b[2] > 0 and b[3] > 0]
        if random and boxes:  # one field of random bytes for the image, made on its device; boxes show it
            fill_t = noise.random_bytes([int(params.get("seed", 0))], tuple(x.shape[-3:]), x.device)[0]
        elif out.is_cpu:  # numpy slices: a box costs a microsecond, not a torch dispatch
            dst, value = out.numpy(), np.array(fills, dtype=np.uint8).reshape(c, 1, 1)
            for top, left, h, w in boxes:
                dst[..., top:top + h, left:left + w] = value
            return out
        else:
            fill_t = torch.tensor(fills, dtype=torch.uint8, device=x.device).view(c, 1, 1)
        for top, left, h, w in boxes:
            region = (..., slice(top, top + h), slice(left, left + w))
            out[region] = fill_t[region] if random else fill_t
        return out


def _clip_box(cy, cx, bh, bw, h, w):
    top, left = max(0, cy - bh // 2), max(0, cx - bw // 2)
    bottom, right = min(h, cy - bh // 2 + bh), min(w, cx - bw // 2 + bw)
    return [top, left, max(0, bottom - top), max(0, right - left)]


@register
class Cutout(EraseOp):
    name = "cutout"
    summary = "Erase square holes of a random side (a fraction of the shorter image side) at random centres (DeVries & Taylor); holes may cross the border."
    params = (
        Param("holes", "int", 1, low=1, high=100, typical=(1, 10), help="number of holes"),
        Param("side", "range", [0.1, 0.3], low=0.0, high=1.0, scalar="upto", help="hole side as a fraction of the shorter side"),
        FILL,
        VALUE,
    )

    def sample(self, gen, size):
        h, w = size
        boxes = []
        for _ in range(self.holes):
            s = max(1, int(round(seeding.uniform(gen, *self.side) * min(h, w))))
            cy, cx = seeding.randint(gen, 0, h - 1), seeding.randint(gen, 0, w - 1)
            boxes.append(_clip_box(cy, cx, s, s, h, w))
        return {"boxes": boxes, "seed": seeding.randint(gen, 0, 2**62)}


@register
class RandomErasing(EraseOp):
    name = "random_erasing"
    summary = "Erase one rectangle of random area and aspect ratio, fully inside the image (Zhong et al. 2020)."
    params = (
        Param("scale", "range", [0.02, 0.33], low=0.0001, high=1.0, typical=(0.01, 0.5), help="erased area as a fraction of the image"),
        Param("ratio", "range", [0.3, 3.3], low=0.01, high=100.0, typical=(0.2, 5.0), help="aspect ratio (height / width) range"),
        FILL,
        VALUE,
    )

    def sample(self, gen, size):
        h, w = size
        area = h * w
        logr = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        seed = seeding.randint(gen, 0, 2**62)
        for _ in range(10):  # the paper / torchvision: retry until the box fits
            a = area * seeding.uniform(gen, *self.scale)
            r = math.exp(seeding.uniform(gen, *logr))
            eh, ew = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
            if 0 < eh < h and 0 < ew < w:
                top, left = seeding.randint(gen, 0, h - eh), seeding.randint(gen, 0, w - ew)
                return {"boxes": [[top, left, eh, ew]], "seed": seed}
        return {"boxes": [], "seed": seed}


@register
class HideAndSeek(EraseOp):
    name = "hide_and_seek"
    summary = "Split the image into a grid of patches and hide each with probability p_hide (Singh & Lee 2017)."
    params = (
        Param("grid", "int_range", [4, 4], low=1, high=64, typical=(2, 16), scalar="exact", help="patches per side, drawn from [low, high]"),
        Param("p_hide", "float", 0.5, low=0.0, high=1.0, help="probability of hiding each patch"),
        FILL,
        VALUE,
    )

    def sample(self, gen, size):
        h, w = size
        n = seeding.randint(gen, *self.grid)
        hide = (torch.rand(n * n, generator=seeding.torch_generator(gen), dtype=torch.float64, device=gen.device) < self.p_hide).tolist()
        ys = [round(i * h / n) for i in range(n + 1)]
        xs = [round(j * w / n) for j in range(n + 1)]
        boxes = [[ys[i], xs[j], ys[i + 1] - ys[i], xs[j + 1] - xs[j]]
                 for i in range(n) for j in range(n) if hide[i * n + j]]
        return {"grid": n, "boxes": boxes, "seed": seeding.randint(gen, 0, 2**62)}


@register
class GridMask(EraseOp):
    name = "grid_mask"
    summary = ("Erase a regular grid of squares (Chen et al. 2020): period d, kept fraction r of each period, "
               "random offset.")
    params = (
        Param("d", "range", [0.15, 0.4], low=0.01, high=1.0, scalar="exact", help="grid period as a fraction of the shorter side"),
        Param("ratio", "float", 0.5, low=0.0, high=1.0, help="fraction of each period that is kept (not erased)"),
        FILL,
    )

    def sample(self, gen, size):
        h, w = size
        d = max(2, int(round(seeding.uniform(gen, *self.d) * min(h, w))))
        keep = int(round(d * self.ratio))
        e = d - keep  # erased side
        oy, ox = seeding.randint(gen, 0, d - 1), seeding.randint(gen, 0, d - 1)
        boxes = []
        if e > 0:
            for y in range(oy - d, h, d):
                for x in range(ox - d, w, d):
                    t, left = max(0, y), max(0, x)
                    b, r = min(h, y + e), min(w, x + e)
                    if b > t and r > left:
                        boxes.append([t, left, b - t, r - left])
        return {"d": d, "offset": [oy, ox], "boxes": boxes}


__all__ = ["EraseOp", "Cutout", "RandomErasing", "HideAndSeek", "GridMask"]
