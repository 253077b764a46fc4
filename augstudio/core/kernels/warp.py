"""The fused warp kernel: resample a uint8 image through one affine matrix, sampling only the output pixels.

Conventions
-----------
* Coordinates are pixel coordinates with pixel *centres* at integers: column ``x`` in ``0 .. W-1``, row
  ``y`` in ``0 .. H-1`` (so an image's centre is ``((W-1)/2, (H-1)/2)``; torchvision's convention).
* A matrix is a 3x3 nested tuple mapping *input* pixel coordinates ``(x, y, 1)`` to *output* pixel
  coordinates (the forward transform). Geometric ops expose it through ``Op.affine(params, size)`` so the
  pipeline can multiply consecutive ops into one matrix and resample once (sharper and faster than one
  resampling per op).
* Interpolation: ``nearest`` (categorical pictures; never invents a value), ``bilinear``, ``bicubic``
  (Keys a = -0.75, as torch / torchvision). Values are computed in float32 on the output grid only and
  rounded once to uint8; every output pixel depends only on its own neighbourhood, so results are
  byte-identical for any ``torch.set_num_threads``.
* Border (``mode``): ``constant`` (pixels outside are ``fill``), ``edge`` (repeat the border pixel),
  ``reflect`` (mirror without repeating the edge pixel: ... 2 1 | 0 1 2 ... ).
* Antialiasing: when the transform shrinks by 2x or more along an axis, the input is first box-averaged
  by the integer factor (in the matrix, not in the result's geometry), so large downscales do not alias.

Everything works on ``C x H x W`` and on batches ``N x C x H x W`` with one matrix per item.
"""

from __future__ import annotations

import math
import struct

import torch

Matrix = tuple  # ((a, b, c), (d, e, f), (0, 0, 1))

IDENTITY: Matrix = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
MODES = ("constant", "reflect", "edge")
_SRC_FORMAT = torch.contiguous_format  # planar: measured faster for grid_sample than channels_last here
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


# -- matrix algebra (plain Python: a handful of 3x3 products per image) -----------------------------------
def matmul(a: Matrix, b: Matrix) -> Matrix:
    """``a @ b`` (apply ``b`` first, then ``a``). Unrolled, summed in the order ``sum()`` would (from 0), so
    the floats are the same as the plain triple loop."""
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = a
    (b00, b01, b02), (b10, b11, b12), (b20, b21, b22) = b
    return ((0.0 + a00 * b00 + a01 * b10 + a02 * b20, 0.0 + a00 * b01 + a01 * b11 + a02 * b21,
             0.0 + a00 * b02 + a01 * b12 + a02 * b22),
            (0.0 + a10 * b00 + a11 * b10 + a12 * b20, 0.0 + a10 * b01 + a11 * b11 + a12 * b21,
             0.0 + a10 * b02 + a11 * b12 + a12 * b22),
            (0.0 + a20 * b00 + a21 * b10 + a22 * b20, 0.0 + a20 * b01 + a21 * b11 + a22 * b21,
             0.0 + a20 * b02 + a21 * b12 + a22 * b22))


def inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f) = m[0], m[1]
    det = a * e - b * d
    if abs(det) < 1e-12:
        raise ValueError("the affine transform is singular (it collapses the image to a line)")
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return ((ia, ib, -(ia * c + ib * f)), (id_, ie, -(id_ * c + ie * f)), (0.0, 0.0, 1.0))


def translation(tx: float, ty: float) -> Matrix:
    return ((1.0, 0.0, float(tx)), (0.0, 1.0, float(ty)), (0.0, 0.0, 1.0))


def scaling(sx: float, sy: float, cx: float = 0.0, cy: float = 0.0) -> Matrix:
    """Scale by (sx, sy) about (cx, cy)."""
    return ((float(sx), 0.0, cx - sx * cx), (0.0, float(sy), cy - sy * cy), (0.0, 0.0, 1.0))


def rotation(degrees: float, cx: float, cy: float) -> Matrix:
    """Counter-clockwise (as seen on screen, y pointing down) rotation about (cx, cy)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # x' - cx = c (x - cx) + s (y - cy);  y' - cy = -s (x - cx) + c (y - cy)
    return ((c, s, cx - c * cx - s * cy), (-s, c, cy + s * cx - c * cy), (0.0, 0.0, 1.0))


def shearing(shx_deg: float, shy_deg: float, cx: float, cy: float) -> Matrix:
    """x' = x + tan(shx) (y - cy);  y' = y + tan(shy) (x - cx)."""
    kx, ky = math.tan(math.radians(shx_deg)), math.tan(math.radians(shy_deg))
    return ((1.0, kx, -kx * cy), (ky, 1.0, -ky * cx), (0.0, 0.0, 1.0))


def center(size: tuple[int, int]) -> tuple[float, float]:
    """(cx, cy) of an image of size (h, w)."""
    h, w = size
    return (w - 1) / 2.0, (h - 1) / 2.0


def box_to_size(top: float, left: float, height: float, width: float, out: tuple[int, int]) -> Matrix:
    """Map the box (its pixel edges) onto an ``out`` sized image (torchvision resize, align_corners=False)."""
    oh, ow = out
    sx, sy = ow / width, oh / height
    # x' + 0.5 = (x + 0.5 - left) * sx
    return ((sx, 0.0, (0.5 - left) * sx - 0.5), (0.0, sy, (0.5 - top) * sy - 0.5), (0.0, 0.0, 1.0))


def is_integer_map(m: Matrix, tol: float = 1e-9) -> bool:
    """True if ``m`` maps pixel centres onto pixel centres (flips, rot90, crops, pads): exact with nearest."""
    vals = [m[0][0], m[0][1], m[1][0], m[1][1]]
    if not all(abs(v - round(v)) < tol for v in vals + [m[0][2], m[1][2]]):
        return False
    return sorted(abs(round(v)) for v in vals) == [0, 0, 1, 1]


def axis_scales(m: Matrix) -> tuple[float, float]:
    """How many input pixels one output pixel spans along x and y (from the inverse matrix)."""
    return _inverse_scales(inverse(m))


def _inverse_scales(inv: Matrix) -> tuple[float, float]:
    return math.hypot(inv[0][0], inv[1][0]), math.hypot(inv[0][1], inv[1][1])


# -- the kernel -----------------------------------------------------------------------------------------
def to_uint8(t: torch.Tensor) -> torch.Tensor:
    """A float tensor of whole numbers in 0..255 as uint8 (truncating like ``.to(torch.uint8)``).

    Through int32: torch's direct float -> uint8 cast goes element by element through int64 (to wrap
    out-of-range values) and costs about 4x a float -> int32 -> uint8 pair on CPU; for values in range the
    bytes are identical."""
    return t.to(torch.int16).to(torch.uint8)


def _fill_values(fill, channels: int) -> list[float]:
    if isinstance(fill, (list, tuple)):
        vals = list(fill) + [fill[-1]] * channels
        vals = vals[:channels]
    else:
        vals = [fill] * channels
    return [float(max(0, min(255, round(float(v))))) for v in vals]


def _source_box(inv: Matrix, out_size, h: int, w: int, margin: int):
    """The input rows/columns that the output can reach (corners of the output mapped back), clamped."""
    oh, ow = out_size
    xs, ys = [], []
    for u in (0.0, ow - 1.0):
        for v in (0.0, oh - 1.0):
            xs.append(inv[0][0] * u + inv[0][1] * v + inv[0][2])
            ys.append(inv[1][0] * u + inv[1][1] * v + inv[1][2])
    x0 = max(0, min(w - 1, math.floor(min(xs)) - margin))
    x1 = max(0, min(w - 1, math.ceil(max(xs)) + margin))
    y0 = max(0, min(h - 1, math.floor(min(ys)) - margin))
    y1 = max(0, min(h - 1, math.ceil(max(ys)) + margin))
    # keep at least two pixels per axis where the image has them (grid_sample's align_corners scale)
    if x1 == x0 and w > 1:
        x0, x1 = (x0 - 1, x1) if x0 > 0 else (x0, x1 + 1)
    if y1 == y0 and h > 1:
        y0, y1 = (y0 - 1, y1) if y0 > 0 else (y0, y1 + 1)
    return y0, y1 + 1, x0, x1 + 1


def box_reduce(src: torch.Tensor, ky: int, kx: int) -> torch.Tensor:
    """Average ``ky x kx`` blocks (float ``N x C x H x W``) with strided adds (much faster than avg_pool2d
    on CPU). A last partial block is dropped, so at most k - 1 border pixels are not seen."""
    h, w = src.shape[-2:]
    hh, ww = (h // ky) * ky, (w // kx) * kx
    src = src[..., :hh, :ww]
    if ky > 1:
        acc = src[..., 0::ky, :].clone()
        for i in range(1, ky):
            acc.add_(src[..., i::ky, :])
        src = acc
    if kx > 1:
        acc = src[..., 0::kx].clone()
        for i in range(1, kx):
            acc.add_(src[..., i::kx])
        src = acc
    return src.mul_(1.0 / (kx * ky))


_PADDING = {"constant": "zeros", "edge": "border", "reflect": "reflection"}
_ARANGE: dict = {}


def _arange(n: int, device) -> torch.Tensor:
    """``arange(n)`` as float32, cached per (n, device) (never written to)."""
    key = (n, str(device))
    t = _ARANGE.get(key)
    if t is None:
        if len(_ARANGE) > 256:
            _ARANGE.clear()
        t = _ARANGE[key] = torch.arange(n, dtype=torch.float32, device=device)
    return t


def warp(x: torch.Tensor, m: Matrix, out_size: tuple[int, int], interpolation: str = "bilinear",
         fill=0, mode: str = "constant", antialias: bool = True, as_float: bool = False) -> torch.Tensor:
    """Resample ``x`` (uint8 ``C x H x W``) through forward matrix ``m`` into an ``out_size`` image.

    ``x`` may also be a float32 copy of a uint8 image (never modified): several warps of the same image
    then share one conversion.

    ``as_float``: return the result as float32 holding the same whole numbers 0..255 that the uint8 result
    would (so a following float kernel skips a uint8 round trip)."""
    if x.dim() == 4:
        return warp_batch(x, [m] * x.shape[0], out_size, interpolation, fill, mode, antialias, as_float)
    return warp_batch(x[None], [m], out_size, interpolation, fill, mode, antialias, as_float)[0]


def warp_batch(x: torch.Tensor, matrices: list, out_size: tuple[int, int], interpolation: str = "bilinear",
               fill=0, mode: str = "constant", antialias: bool = True, as_float: bool = False) -> torch.Tensor:
    """One kernel for a batch: ``x`` uint8 ``N x C x H x W`` (any device), one forward matrix per item.

    Only the input region the output can reach is converted to float (constant / edge borders), and the
    output grid is sampled by ``grid_sample`` (align_corners=True: pixel centres at integers).

    On the CPU, items are sampled together when they reach the same input region and shrink by the same
    factor, so every item gets exactly the floats it would get alone (batched == per image, byte for
    byte). On an accelerator the items of one shrink factor share the union of their regions: one kernel,
    at the price of rounding that can differ from the per-image result by a grey level.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if mode not in MODES:
        raise ValueError(f"border mode must be one of {', '.join(MODES)}, got {mode!r}")
    n, c, h, w = x.shape
    oh, ow = int(out_size[0]), int(out_size[1])
    invs = [inverse(mm) for mm in matrices]
    if mode == "reflect":  # mirrored samples can land anywhere: the whole image
        boxes = [(0, h, 0, w)] * n
    else:
        margin = 2 if interpolation == "bicubic" else 1
        boxes = [_source_box(iv, (oh, ow), h, w, margin) for iv in invs]
    shrink = antialias and interpolation != "nearest"
    factors = [tuple(max(1, int(a)) for a in _inverse_scales(iv)) if shrink else (1, 1) for iv in invs]
    exact = x.device.type == "cpu"
    groups: dict = {}
    for i in range(n):
        groups.setdefault((boxes[i], factors[i]) if exact else factors[i], []).append(i)
    if len(groups) == 1:
        return _warp_group(x, invs, _union(boxes), (oh, ow), interpolation, fill, mode, shrink, as_float)
    out = torch.empty((n, c, oh, ow), dtype=torch.float32 if as_float else torch.uint8, device=x.device)
    for idx in groups.values():
        box = _union([boxes[i] for i in idx])
        out[idx] = _warp_group(x[idx], [invs[i] for i in idx], box, (oh, ow), interpolation, fill, mode, shrink,
                               as_float)
    return out


def _union(boxes: list) -> tuple:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))


def _warp_group(x, invs0, box, out_size, interpolation, fill, mode, shrink: bool, as_float: bool):
    """Sample the items of ``x`` (one inverse matrix each) from the input region ``box``."""
    n, c, h, w = x.shape
    oh, ow = out_size
    device = x.device
    y0, y1, x0, x1 = box
    shift = translation(-x0, -y0)
    if x.dtype == torch.float32:  # a caller's float copy of the uint8 image (shared by several warps): a view
        src = x[:, :, y0:y1, x0:x1]
    else:
        src = x[:, :, y0:y1, x0:x1].to(torch.float32, memory_format=_SRC_FORMAT)
    invs = [matmul(shift, iv) for iv in invs0]  # output -> cropped input coordinates
    # antialias: box-average by the integer shrink factor (the same for the whole group)
    if shrink:
        scales = [_inverse_scales(iv) for iv in invs0]  # == axis_scales(m), without inverting again
        kx = max(1, min(int(min(sc[0] for sc in scales)), src.shape[-1]))
        ky = max(1, min(int(min(sc[1] for sc in scales)), src.shape[-2]))
        if kx > 1 or ky > 1:
            src = box_reduce(src, ky, kx)
            # pooled pixel j covers [j k, j k + k - 1]: input coordinate x = k j + (k - 1) / 2
            unpool = ((1.0 / kx, 0.0, -(kx - 1) / (2.0 * kx)), (0.0, 1.0 / ky, -(ky - 1) / (2.0 * ky)),
                      (0.0, 0.0, 1.0))
            invs = [matmul(unpool, iv) for iv in invs]
    sh, sw = src.shape[-2:]
    # 3. constant fill f: sample (x - f) with zero padding, add f back (the weights sum to one)
    fills = _fill_values(fill, c) if mode == "constant" else [0.0] * c
    shifted = any(fills)
    if shifted:
        ft = torch.tensor(fills, dtype=torch.float32, device=device)[None, :, None, None]
        src = src - ft
    # 4. the sampling grid in grid_sample's normalised units (align_corners=True)
    gx_scale = 2.0 / max(sw - 1, 1)
    gy_scale = 2.0 / max(sh - 1, 1)
    rows = []
    for iv in invs:
        rows.append([iv[0][0] * gx_scale, iv[0][1] * gx_scale, iv[0][2] * gx_scale - 1.0,
                     iv[1][0] * gy_scale, iv[1][1] * gy_scale, iv[1][2] * gy_scale - 1.0])
    u = _arange(ow, device)
    v = _arange(oh, device)
    grid = torch.empty((n, oh, ow, 2), dtype=torch.float32, device=device)
    if n == 1 and device.type == "cpu":
        # one item: the same float32 products and sums as the batched form below (the coefficients are
        # rounded to float32 first, as torch.tensor would), without the small-tensor bookkeeping
        k0, k1, k2, k3, k4, k5 = struct.unpack("6f", struct.pack("6f", *rows[0]))
        torch.add(u * k0, (v * k1 + k2)[:, None], out=grid[0, ..., 0])
        torch.add(u * k3, (v * k4 + k5)[:, None], out=grid[0, ..., 1])
    else:
        k = torch.tensor(rows, dtype=torch.float32, device=device)  # N x 6
        torch.add(k[:, 0, None, None] * u, (k[:, 1, None] * v + k[:, 2, None])[:, :, None],
                  out=grid[..., 0])
        torch.add(k[:, 3, None, None] * u, (k[:, 4, None] * v + k[:, 5, None])[:, :, None],
                  out=grid[..., 1])
    pad = _PADDING[mode]
    out = torch.nn.functional.grid_sample(src, grid, mode=interpolation, padding_mode=pad, align_corners=True)
    if shifted:
        out = out.add_(ft)
    if interpolation == "bilinear":  # a convex combination of 0..255 values: no clamp needed
        out = out.round_()
    elif interpolation == "bicubic":
        out = out.round_().clamp_(0, 255)
    return out if as_float else to_uint8(out.contiguous())


__all__ = ["warp", "warp_batch", "matmul", "inverse", "translation", "scaling", "rotation", "shearing",
           "center", "box_to_size", "to_uint8", "is_integer_map", "axis_scales", "IDENTITY", "MODES", "INTERPOLATIONS"]
