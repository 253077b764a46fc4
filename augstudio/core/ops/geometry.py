"""Geometric ops. They apply to categorical pictures with nearest resampling, so labels never change.

Every op here also states the forward affine it performs (``affine(params, size) -> (matrix, out_size)``,
see ``augstudio.core.warp``), so the pipeline multiplies a run of consecutive geometric ops into one
matrix and resamples once. Applied alone, exact ops (flips, rot90, crops, pads) move pixels without any
resampling; the others resample through the same warp kernel.
"""

from __future__ import annotations

import math
from typing import ClassVar

import cv2
import numpy as np
import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.kernels import cv, jit
from augstudio.core.kernels import warp as W

from .base import Op
from .params import Param
from .registry import register

INTERPOLATIONS = W.INTERPOLATIONS
PAD_MODES = W.MODES

INTERP = Param("interpolation", "choice", "bilinear", choices=INTERPOLATIONS,
               help="resampling filter (categorical images always use nearest)")
FILL = Param("fill", "fill", 0, help="value for pixels that come from outside the image (padding_mode constant)")
PAD_MODE = Param("padding_mode", "choice", "constant", choices=PAD_MODES,
                 help="pixels from outside the image: constant (fill), reflect (mirror), edge (repeat border)")


class GeometricOp(Op):
    """A geometric op: ``affine`` states the forward transform (see ``kernels.warp``), so the engine fuses a
    run of them into one matrix and one resampling; applied alone it warps with it."""

    family = "geometry"
    categorical = "geometric"
    samples_outside: ClassVar[bool] = True  # can output pixels come from outside the input (fill matters)?

    def affine(self, params: dict, size: tuple[int, int]) -> tuple[W.Matrix, tuple[int, int]]:
        raise NotImplementedError

    def border(self) -> tuple[str, object]:
        """(padding_mode, fill) this op uses for pixels from outside the image. Ops that never reach
        outside (resize, crops inside the image) use edge, so their half-pixel rim repeats the border
        as torchvision's resize does."""
        if not self.samples_outside:
            return "edge", 0
        return self.values.get("padding_mode", "constant"), self.values.get("fill", 0)

    def interp(self) -> str | None:
        """The op's interpolation, or None when it never resamples (exact pixel moves)."""
        return self.values.get("interpolation")

    def output_size(self, size, params):
        return tuple(self.affine(params, size)[1])

    def clip(self, params: dict, size: tuple[int, int]) -> tuple | None:
        """Applied alone, the op reads only this box ``(top, left, height, width)`` of its input, repeating
        its edge (a crop, then a resize), or None: it samples the input through its matrix. (Fused with
        other geometry only the matrix counts.)"""
        return None

    def apply(self, x, params, kind):
        size = tuple(x.shape[-2:])
        m, out = self.affine(params, size)
        mode, fill = self.border()
        return W.warp(x, m, out, interp_for(self.interp() or "nearest", kind), fill, mode,
                      clip=self.clip(params, size))

    def apply_batch(self, x, params_list, kind):
        if x.shape[0] == 1:
            return self.apply(x[0], params_list[0], kind)[None]
        size = tuple(x.shape[-2:])
        mats = [self.affine(p, size) for p in params_list]
        outs = {tuple(o) for _, o in mats}
        if len(outs) > 1:
            raise RecipeError(f"op '{self.name}' gives the items of one batch different sizes {sorted(outs)}; "
                              "add a fixed-size crop or resize so every item has the same output size")
        mode, fill = self.border()
        clips = [self.clip(p, size) for p in params_list]
        return W.warp_batch(x, [m for m, _ in mats], outs.pop(), interp_for(self.interp() or "nearest", kind),
                            fill, mode, clips=None if all(c is None for c in clips) else clips)


def interp_for(name: str, kind: str) -> str:
    return "nearest" if kind == "categorical" else name


# ``output_size`` without building the matrix, for ops whose size does not depend on the draw (every
# sampled step asks it; tests/core/test_ops_geometry.py checks it against each op's real output)
def _input_size(self, size, params):
    return size


def _fixed_size(self, size, params):
    return tuple(self.size)


@register
class HFlip(GeometricOp):
    name = "hflip"
    output_size = _input_size
    summary = "Mirror left-right."
    samples_outside = False

    def affine(self, params, size):
        h, w = size
        return ((-1.0, 0.0, w - 1.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), (h, w)

    def apply(self, x, params, kind):
        return x.flip(-1)


@register
class VFlip(GeometricOp):
    name = "vflip"
    output_size = _input_size
    summary = "Mirror top-bottom."
    samples_outside = False

    def affine(self, params, size):
        h, w = size
        return ((1.0, 0.0, 0.0), (0.0, -1.0, h - 1.0), (0.0, 0.0, 1.0)), (h, w)

    def apply(self, x, params, kind):
        return x.flip(-2)


@register
class Rot90(GeometricOp):
    name = "rot90"
    summary = ("Rotate by a random multiple of 90 degrees (counter-clockwise); exact, no resampling. The "
               "natural symmetry of wafer maps.")
    samples_outside = False
    params = (Param("turns", "int_range", [0, 3], low=0, high=3, scalar="exact",
                    help="number of quarter turns drawn from [low, high]"),)

    def sample(self, gen, size):
        return {"k": seeding.randint(gen, *self.turns)}

    def affine(self, params, size):
        h, w = size
        m = W.IDENTITY
        for _ in range(params["k"] % 4):
            # one CCW quarter turn of an (h, w) image: x' = y, y' = w - 1 - x; size becomes (w, h)
            m = W.matmul(((0.0, 1.0, 0.0), (-1.0, 0.0, w - 1.0), (0.0, 0.0, 1.0)), m)
            h, w = w, h
        return m, (h, w)

    def output_size(self, size, params):
        return (size[1], size[0]) if params["k"] % 2 else size

    def apply(self, x, params, kind):
        return torch.rot90(x, params["k"] % 4, dims=(-2, -1))


@register
class Rotate(GeometricOp):
    name = "rotate"
    output_size = _input_size
    summary = "Rotate by a random angle (degrees, counter-clockwise) about the centre; the size is kept."
    params = (
        Param("degrees", "range", [-15.0, 15.0], low=-360, high=360, scalar="symmetric", typical=(-45.0, 45.0),
              help="angle range in degrees; one number x means [-x, x]"),
        INTERP,
        FILL,
        PAD_MODE,
    )

    def sample(self, gen, size):
        return {"angle": round(seeding.uniform(gen, *self.degrees), 6)}

    def affine(self, params, size):
        return W.rotation(params["angle"], *W.center(size)), tuple(size)


@register
class Translate(GeometricOp):
    name = "translate"
    output_size = _input_size
    summary = "Shift by a random fraction of the width and height."
    params = (
        Param("x", "range", [-0.1, 0.1], low=-1, high=1, typical=(-0.3, 0.3), scalar="symmetric", help="shift as a fraction of the width"),
        Param("y", "range", [-0.1, 0.1], low=-1, high=1, typical=(-0.3, 0.3), scalar="symmetric", help="shift as a fraction of the height"),
        Param("whole_pixels", "bool", False,
              help="round the shift to whole pixels (as torchvision and albumentations do): pixels move exactly, "
                   "without interpolation's slight blur"),
        INTERP,
        FILL,
        PAD_MODE,
    )

    def sample(self, gen, size):
        h, w = size
        fx, fy = seeding.uniform(gen, *self.x) * w, seeding.uniform(gen, *self.y) * h
        if self.whole_pixels:  # the same draws: whole_pixels never changes another step's stream
            return {"dx": int(round(fx)), "dy": int(round(fy))}
        return {"dx": round(fx, 4), "dy": round(fy, 4)}

    def affine(self, params, size):
        return W.translation(params["dx"], params["dy"]), tuple(size)

    def apply(self, x, params, kind):
        dx, dy = params["dx"], params["dy"]
        if float(dx).is_integer() and float(dy).is_integer():  # a window: a copy and a fill, no resampling
            h, w = x.shape[-2:]
            return _crop(x, -int(dy), -int(dx), h, w, self)
        return super().apply(x, params, kind)


@register
class Scale(GeometricOp):
    name = "scale"
    output_size = _input_size
    summary = "Zoom in or out about the centre by a random factor; the size is kept."
    params = (
        Param("factor", "range", [0.9, 1.1], low=0.01, high=100, typical=(0.5, 2.0), scalar="factor",
              help="zoom factor range; one number x means [1-x, 1+x]"),
        Param("keep_aspect", "bool", True, help="one factor for both axes"),
        INTERP,
        FILL,
        PAD_MODE,
    )

    def sample(self, gen, size):
        sx = round(seeding.uniform(gen, *self.factor), 6)
        sy = sx if self.keep_aspect else round(seeding.uniform(gen, *self.factor), 6)
        return {"sx": sx, "sy": sy}

    def affine(self, params, size):
        return W.scaling(params["sx"], params["sy"], *W.center(size)), tuple(size)


@register
class Shear(GeometricOp):
    name = "shear"
    output_size = _input_size
    summary = "Shear by random angles about the centre: x' = x + tan(sx) (y - cy), y' = y + tan(sy) (x - cx)."
    params = (
        Param("x", "range", [-10.0, 10.0], low=-80, high=80, typical=(-30.0, 30.0), scalar="symmetric", help="horizontal shear angle (degrees)"),
        Param("y", "range", [0.0, 0.0], low=-80, high=80, typical=(-30.0, 30.0), scalar="symmetric", help="vertical shear angle (degrees)"),
        INTERP,
        FILL,
        PAD_MODE,
    )

    def sample(self, gen, size):
        return {"sx": round(seeding.uniform(gen, *self.x), 6), "sy": round(seeding.uniform(gen, *self.y), 6)}

    def affine(self, params, size):
        return W.shearing(params["sx"], params["sy"], *W.center(size)), tuple(size)


@register
class Affine(GeometricOp):
    name = "affine"
    output_size = _input_size
    summary = ("Rotate, scale, shear and translate at once (one resampling): about the centre, in the order "
               "shear, scale, rotate, then translate.")
    params = (
        Param("degrees", "range", [-15.0, 15.0], low=-360, high=360, scalar="symmetric", help="rotation (degrees, CCW)"),
        Param("translate", "range", [-0.1, 0.1], low=-1, high=1, typical=(-0.3, 0.3), scalar="symmetric",
              help="shift as a fraction of the side (x and y drawn independently)"),
        Param("scale", "range", [0.9, 1.1], low=0.01, high=100, typical=(0.5, 2.0), scalar="factor", help="zoom factor"),
        Param("shear", "range", [-5.0, 5.0], low=-80, high=80, typical=(-30.0, 30.0), scalar="symmetric", help="horizontal shear (degrees)"),
        INTERP,
        FILL,
        PAD_MODE,
    )

    def sample(self, gen, size):
        h, w = size
        return {
            "angle": round(seeding.uniform(gen, *self.degrees), 6),
            "dx": round(seeding.uniform(gen, *self.translate) * w, 4),
            "dy": round(seeding.uniform(gen, *self.translate) * h, 4),
            "scale": round(seeding.uniform(gen, *self.scale), 6),
            "shear": round(seeding.uniform(gen, *self.shear), 6),
        }

    def affine(self, params, size):
        cx, cy = W.center(size)
        m = W.shearing(params["shear"], 0.0, cx, cy)
        m = W.matmul(W.scaling(params["scale"], params["scale"], cx, cy), m)
        m = W.matmul(W.rotation(params["angle"], cx, cy), m)
        m = W.matmul(W.translation(params["dx"], params["dy"]), m)
        return m, tuple(size)


def _crop_box_sample(self, gen, size):
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


@register
class RandomResizedCrop(GeometricOp):
    name = "random_resized_crop"
    output_size = _fixed_size
    summary = "Crop a random area and aspect ratio, then resize to a fixed size (Inception-style)."
    samples_outside = False
    params = (
        Param("size", "size", [224, 224], help="output [height, width]"),
        Param("scale", "range", [0.08, 1.0], low=0.0001, high=1.0, typical=(0.02, 1.0), help="crop area as a fraction of the image"),
        Param("ratio", "range", [3 / 4, 4 / 3], low=0.01, high=100.0, typical=(0.33, 3.0), help="crop aspect ratio (width / height)"),
        INTERP,
    )

    sample = _crop_box_sample

    def affine(self, params, size):
        out = tuple(self.size)
        return W.box_to_size(params["top"], params["left"], params["height"], params["width"], out), out

    def clip(self, params, size):  # crop, then resize (torchvision's resized_crop): the box's edge repeats
        return params["top"], params["left"], params["height"], params["width"]


@register
class RandomCrop(GeometricOp):
    name = "random_crop"
    output_size = _fixed_size
    summary = "Cut a random window of a fixed size (padded with fill / padding_mode where the image is smaller)."
    params = (Param("size", "size", [224, 224], help="output [height, width]"), FILL, PAD_MODE)

    def sample(self, gen, size):
        ch, cw = self.size
        dy, dx = size[0] - ch, size[1] - cw  # the window's free play: negative where it is larger than the image
        top = seeding.randint(gen, dy, 0) if dy < 0 else seeding.randint(gen, 0, dy)
        left = seeding.randint(gen, dx, 0) if dx < 0 else seeding.randint(gen, 0, dx)
        return {"top": top, "left": left}

    def affine(self, params, size):
        return W.translation(-params["left"], -params["top"]), tuple(self.size)

    def apply(self, x, params, kind):
        return _crop(x, params["top"], params["left"], *self.size, self)


@register
class CenterCrop(GeometricOp):
    name = "center_crop"
    output_size = _fixed_size
    summary = "Cut the centre window of a fixed size (padded where the image is smaller)."
    params = (Param("size", "size", [224, 224], help="output [height, width]"), FILL, PAD_MODE)

    def _origin(self, size):
        h, w = size
        ch, cw = self.size
        return int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))  # torchvision's rounding

    def affine(self, params, size):
        top, left = self._origin(size)
        return W.translation(-left, -top), tuple(self.size)

    def apply(self, x, params, kind):
        top, left = self._origin(tuple(x.shape[-2:]))
        return _crop(x, top, left, *self.size, self)


@register
class Resize(GeometricOp):
    name = "resize"
    output_size = _fixed_size
    summary = "Resize to a fixed [height, width] (box-averaged first when shrinking 2x or more)."
    samples_outside = False
    params = (Param("size", "size", [224, 224], help="output [height, width]"), INTERP)

    def affine(self, params, size):
        h, w = size
        out = tuple(self.size)
        return W.box_to_size(0, 0, h, w, out), out


@register
class Pad(GeometricOp):
    name = "pad"
    summary = "Add a border of `padding` pixels on every side (constant fill, reflect or edge)."
    params = (Param("padding", "int", 4, low=0, high=4096, typical=(0, 64), help="pixels added on each side"), FILL, PAD_MODE)

    def affine(self, params, size):
        h, w = size
        p = self.padding
        return W.translation(p, p), (h + 2 * p, w + 2 * p)

    def output_size(self, size, params):
        return size[0] + 2 * self.padding, size[1] + 2 * self.padding

    def apply(self, x, params, kind):
        h, w = x.shape[-2:]
        return _window(x, -self.padding, -self.padding, h + 2 * self.padding, w + 2 * self.padding, *self.border())


def _crop(x, top: int, left: int, height: int, width: int, op: GeometricOp):
    """``_window`` with ``op``'s border mode and fill, asked for only where the window leaves the image."""
    shape = x.shape
    h, w = shape[-2:]
    # inside the image: _view, inlined (calling it read 1.5-3% slower on random_crop / center_crop in ab.py)
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        st = x.stride()
        return x.as_strided((*shape[:-2], height, width), st, x.storage_offset() + top * st[-2] + left * st[-1])
    return _window(x, top, left, height, width, *op.border())


def _view(x, top: int, left: int, height: int, width: int):
    """The view ``x[..., top:top+height, left:left+width]`` (inside the image) made by one call: 2.9 / 4.7 us
    (warm / between other libraries' calls) against 3.6 / 8.2 through numpy's slicing and 5.6 / 6.7 through
    torch's indexing."""
    st = x.stride()
    return x.as_strided((*x.shape[:-2], height, width), st, x.storage_offset() + top * st[-2] + left * st[-1])


_FILL_BYTES: dict = {}  # (fill, channels) -> the fill as one uint8 per channel (a pad's compiled copy)


def _fill_bytes(fill, channels: int) -> np.ndarray:
    """``fill`` for ``channels`` channels as uint8, made once per fill: building the array cost ~5 us of a
    pad's call between other libraries' calls."""
    key = (fill if type(fill) is int else repr(fill), channels)
    a = _FILL_BYTES.get(key)
    if a is None:
        if len(_FILL_BYTES) >= 64:
            _FILL_BYTES.clear()
        a = _FILL_BYTES[key] = np.array(W._fill_values(fill, channels), dtype=np.uint8)
    return a


def _window(x, top: int, left: int, height: int, width: int, mode: str, fill):
    """x[..., top:top+height, left:left+width] with out-of-image pixels from the border mode (exact)."""
    shape = x.shape
    c, h, w = shape[-3:]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return _view(x, top, left, height, width)
    on_cv = cv.active(x) and len(shape) == 3
    y0, y1, x0, x1 = max(top, 0), min(top + height, h), max(left, 0), min(left + width, w)
    borders = (y0 - top, top + height - y1, x0 - left, left + width - x1)
    if (on_cv and y1 > y0 and x1 > x0
            and (mode == "constant" or max(borders[:2]) < y1 - y0 and max(borders[2:]) < x1 - x0)):
        # within one period: mirrors and repeats give the same pixels as the gather below
        loops = jit.load("warp_jit") if mode == "constant" and x.is_contiguous() else None
        if loops is not None:  # every plane in one compiled call (a view's rows go to OpenCV)
            dst = np.empty((c, height, width), np.uint8)
            loops.pad_constant(x.numpy(), top, left, _fill_bytes(fill, c), dst)
            return torch.from_numpy(dst)
        out, dst = cv.new_planes((c, height, width))
        fills = W._fill_values(fill, c)
        src = cv.planes(x)[:, y0:y1, x0:x1]
        for i in range(c):  # OpenCV's border copy, a call per plane
            cv2.copyMakeBorder(src[i], *borders, cv.BORDERS[mode], dst=dst[i], value=fills[i])
        return out
    if mode == "constant":
        out = torch.empty((*x.shape[:-2], height, width), dtype=x.dtype, device=x.device)
        c = x.shape[-3]
        fills = W._fill_values(fill, c)
        out[:] = torch.tensor(fills, dtype=torch.uint8, device=x.device).view(c, 1, 1)
        y0, y1 = max(top, 0), min(top + height, h)
        x0, x1 = max(left, 0), min(left + width, w)
        if y1 > y0 and x1 > x0:
            out[..., y0 - top:y1 - top, x0 - left:x1 - left] = x[..., y0:y1, x0:x1]
        return out
    m = W.translation(-left, -top)
    return W.warp(x, m, (height, width), "nearest", fill, mode)


__all__ = ["GeometricOp", "HFlip", "VFlip", "Rot90", "Rotate", "Translate", "Scale", "Shear", "Affine",
           "RandomResizedCrop", "RandomCrop", "CenterCrop", "Resize", "Pad", "interp_for", "INTERPOLATIONS"]
