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

import numpy as np
import torch

from . import cv, jit

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
    (a, b, c), (d, e, f) = m[0][:3], m[1][:3]
    for v in (a, b, c, d, e, f):  # a loop, not a generator: this runs for every step of every fused run
        if abs(v - round(v)) >= tol:
            return False
    return sorted((abs(round(a)), abs(round(b)), abs(round(d)), abs(round(e)))) == [0, 0, 1, 1]


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
    if type(fill) is int and 0 <= fill <= 255:  # the usual fill, without the rounding below (~1.5 us a call)
        return [float(fill)] * channels
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
    """Means of ``ky x kx`` blocks of uint8 ``... x H x W`` (the antialiasing before a large shrink); a last
    partial block is dropped, so at most k - 1 border pixels are not seen. The torch form keeps the exact
    means as float32; the OpenCV form (CPU) rounds them to uint8, which moves a following bilinear sample by
    at most half a level, so the two still agree within one level after the warp's own rounding."""
    if cv.active(src):
        return torch.from_numpy(cv.box_reduce(cv.planes(src), ky, kx))
    h, w = src.shape[-2:]
    hh, ww = (h // ky) * ky, (w // kx) * kx
    acc = src[..., :hh, :ww].to(torch.float32)  # whole-number sums: exact in float32, in any order
    if ky > 1:
        rows = acc[..., 0::ky, :].clone()
        for i in range(1, ky):
            rows.add_(acc[..., i::ky, :])
        acc = rows
    if kx > 1:
        cols = acc[..., 0::kx].clone()
        for i in range(1, kx):
            cols.add_(acc[..., i::kx])
        acc = cols
    return acc.div_(ky * kx)


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
         fill=0, mode: str = "constant", antialias: bool = True, as_float: bool = False,
         clip: tuple | None = None) -> torch.Tensor:
    """Resample ``x`` (uint8 ``C x H x W``) through forward matrix ``m`` into an ``out_size`` image.

    ``x`` may also be a float32 tensor of whole numbers 0..255 (treated as the uint8 image it holds).

    ``as_float``: return the result as float32 holding the same whole numbers 0..255 that the uint8 result
    would (for a following float kernel). ``clip``: see ``warp_batch``."""
    if x.dim() == 3 and x.dtype == torch.uint8 and not as_float:
        # flips, quarter turns and crops that stay inside the image: a view (a flip makes its copy), the
        # pixels every path below gives for such a map, without a batch of one or a copy of a crop
        inv = inverse(m)
        if is_integer_map(inv):
            view = _integer_view(x, inv, (int(out_size[0]), int(out_size[1])), _frame(clip, *x.shape[-2:]))
            if view is not None:
                return view
    clips = None if clip is None else [clip] * (x.shape[0] if x.dim() == 4 else 1)
    if x.dim() == 4:
        return warp_batch(x, [m] * x.shape[0], out_size, interpolation, fill, mode, antialias, as_float, clips)
    return warp_batch(x[None], [m], out_size, interpolation, fill, mode, antialias, as_float, clips)[0]


def warp_batch(x: torch.Tensor, matrices: list, out_size: tuple[int, int], interpolation: str = "bilinear",
               fill=0, mode: str = "constant", antialias: bool = True, as_float: bool = False,
               clips: list | None = None) -> torch.Tensor:
    """One kernel for a batch: ``x`` uint8 ``N x C x H x W`` (any device), one forward matrix per item.

    * ``nearest``: an index gather, the indices computed on the CPU in float64 from the matrix alone, so it
      is exact and the same on every device (integer maps -- flips, quarter turns, crops -- are slices).
    * ``bilinear`` / ``bicubic`` on the CPU: OpenCV, item by item (batched == per image, byte for byte);
      a map that is a plain resize of the region it reads uses OpenCV's separable resize. Elsewhere
      ``grid_sample`` over the input region the output can reach: items are sampled together when they
      reach the same region (on an accelerator: share the union of their regions), within one grey level
      of the CPU result.
    * antialias: a shrink by ``k >= 2`` along an axis first averages ``k``-pixel blocks (integer, the same on
      every device; blocks are aligned to the image, or to the clip box), so large downscales do not
      alias; smaller shrinks sample directly.
    * ``clips``: per item ``(top, left, height, width)`` or None: the item reads only that box of the
      input, repeating its edge (crop, then resize: torchvision's ``resized_crop``); ``mode`` and ``fill``
      do not apply to such items.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if mode not in MODES:
        raise ValueError(f"border mode must be one of {', '.join(MODES)}, got {mode!r}")
    n, c, h, w = x.shape
    oh, ow = int(out_size[0]), int(out_size[1])
    invs = [inverse(mm) for mm in matrices]
    if clips is not None and any(cb is not None for cb in clips):
        mode = "edge"
    fills = _fill_values(fill, c) if mode == "constant" else [0.0] * c
    if interpolation == "nearest":
        out = _nearest_batch(x, invs, (oh, ow), fills, mode, clips)
        return out.to(torch.float32) if as_float and not out.is_floating_point() else out
    if x.is_floating_point():  # whole numbers 0..255: the uint8 image they hold
        x = to_uint8(x)
    regions = [_region(invs[i], (oh, ow), (h, w), interpolation, mode, antialias, clips[i] if clips else None)
               for i in range(n)]
    if cv.active(x):
        out, out_np = cv.new_planes((n, c, oh, ow))
        x_np = x.numpy()  # sliced in numpy: a torch index costs several us a call, more in cold caches
        for i in range(n):
            box, block = regions[i]
            src = cv.byte_rows(x_np[i, :, box[0]:box[1], box[2]:box[3]])
            if block != (1, 1):
                src = cv.box_reduce(src, *block)
            cv.warp_affine(src, _region_matrix(invs[i], box, block), (oh, ow), interpolation, mode, fills,
                           out_np[i])
        return out.to(torch.float32) if as_float else out
    # the union of items' regions may be shared where their blocks line up (no clip box); on the CPU only
    # items that read the same region run together (every item gets exactly its own floats)
    share = not x.is_cpu and not clips
    groups: dict = {}
    for i in range(n):
        groups.setdefault(regions[i][1] if share else regions[i], []).append(i)
    if len(groups) == 1:
        return _warp_group(x, invs, regions, (oh, ow), interpolation, fills, mode, as_float)
    out = torch.empty((n, c, oh, ow), dtype=torch.float32 if as_float else torch.uint8, device=x.device)
    for idx in groups.values():
        out[idx] = _warp_group(x[idx], [invs[i] for i in idx], [regions[i] for i in idx], (oh, ow), interpolation,
                               fills, mode, as_float)
    return out


def probe(x: torch.Tensor, m: Matrix, out_size: tuple[int, int], fill=0, mode: str = "constant") -> torch.Tensor:
    """A nearest-neighbour sample of uint8 ``C x H x W`` through ``m`` for measuring image statistics only
    (the engine's probe of a moved colour step). On the CPU OpenCV's nearest, whose ties may round the
    other way than ``warp``'s exact gather: a statistic moves by a hair, never a whole pixel of output."""
    if not cv.active(x) or x.shape[-3] > 4:
        return warp(x, m, out_size, "nearest", fill, mode)
    c = x.shape[-3]
    out, dst = cv.new_planes((c, *out_size))
    cv.warp_affine(cv.planes(x), inverse(m), out_size, "nearest", mode,
                   _fill_values(fill, c) if mode == "constant" else [0.0] * c, dst)
    return out


def _union(boxes: list) -> tuple:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))


def _region(inv: Matrix, out_size, size, interpolation: str, mode: str, antialias: bool, clip):
    """The input box ``(y0, y1, x0, x1)`` an item reads and its antialias block ``(ky, kx)``. The box covers
    what the output can reach (the whole image for reflect), within the clip box if there is one, grown to
    whole blocks (aligned to the clip box or to the image)."""
    h, w = size
    frame = _frame(clip, h, w)
    sx, sy = _inverse_scales(inv) if antialias else (1.0, 1.0)
    ky = max(1, min(int(sy), frame[1] - frame[0]))
    kx = max(1, min(int(sx), frame[3] - frame[2]))
    if clip is not None or mode == "reflect":
        box = frame
    else:  # the taps' reach: one pixel (two for bicubic), or that many blocks and one more when averaging
        taps = 2 if interpolation == "bicubic" else 1
        k = max(kx, ky)
        box = _source_box(inv, out_size, h, w, taps if k == 1 else (taps + 1) * k)
    y0, y1 = _blocks(box[0], box[1], ky, frame[0], frame[1])
    x0, x1 = _blocks(box[2], box[3], kx, frame[2], frame[3])
    return (y0, y1, x0, x1), (ky, kx)


def _blocks(lo: int, hi: int, k: int, f0: int, f1: int) -> tuple[int, int]:
    """``[lo, hi)`` grown to whole ``k``-blocks of the frame ``[f0, f1)`` (blocks start at f0; the frame's
    last partial block is dropped), keeping two blocks where the frame has them (grid_sample's scale)."""
    if k == 1:
        return lo, hi
    end = f0 + ((f1 - f0) // k) * k
    a = min(f0 + ((lo - f0) // k) * k, end - k)
    b = max(min(f0 - (-(hi - f0) // k) * k, end), a + k)
    if b - a < 2 * k and end - f0 >= 2 * k:
        a, b = (a - k, b) if a > f0 else (a, b + k)
    return a, b


def _region_matrix(inv: Matrix, box: tuple, block: tuple) -> Matrix:
    """Output pixel -> pixel of the region ``box`` after its block averaging."""
    inv = matmul(translation(-box[2], -box[0]), inv)
    ky, kx = block
    if kx > 1 or ky > 1:
        # reduced pixel j covers [j k, j k + k - 1]: input coordinate x = k j + (k - 1) / 2
        unpool = ((1.0 / kx, 0.0, -(kx - 1) / (2.0 * kx)), (0.0, 1.0 / ky, -(ky - 1) / (2.0 * ky)),
                  (0.0, 0.0, 1.0))
        inv = matmul(unpool, inv)
    return inv


def _grid(invs: list, src_size, out_size, device) -> torch.Tensor:
    """``N x oh x ow x 2`` sampling grid in grid_sample's normalised units (align_corners=True) for inverse
    matrices into a ``src_size`` image."""
    sh, sw = src_size
    oh, ow = out_size
    gx_scale = 2.0 / max(sw - 1, 1)
    gy_scale = 2.0 / max(sh - 1, 1)
    rows = []
    for iv in invs:
        rows.append([iv[0][0] * gx_scale, iv[0][1] * gx_scale, iv[0][2] * gx_scale - 1.0,
                     iv[1][0] * gy_scale, iv[1][1] * gy_scale, iv[1][2] * gy_scale - 1.0])
    u = _arange(ow, device)
    v = _arange(oh, device)
    grid = torch.empty((len(invs), oh, ow, 2), dtype=torch.float32, device=device)
    k = torch.tensor(rows, dtype=torch.float32, device=device)  # N x 6
    torch.add(k[:, 0, None, None] * u, (k[:, 1, None] * v + k[:, 2, None])[:, :, None], out=grid[..., 0])
    torch.add(k[:, 3, None, None] * u, (k[:, 4, None] * v + k[:, 5, None])[:, :, None], out=grid[..., 1])
    return grid


def _warp_group(x, invs0, regions, out_size, interpolation, fills, mode, as_float: bool):
    """``grid_sample`` the items of uint8 ``x`` (one inverse matrix each) from the union of their regions
    (every item of the group has the same block, and its blocks line up with the union's)."""
    n, c, h, w = x.shape
    oh, ow = out_size
    device = x.device
    box = _union([r[0] for r in regions])
    block = regions[0][1]
    src = x[..., box[0]:box[1], box[2]:box[3]]
    if block != (1, 1):
        src = box_reduce(src, *block)
    invs = [_region_matrix(iv, box, block) for iv in invs0]
    src = src.to(torch.float32, memory_format=_SRC_FORMAT)
    sh, sw = src.shape[-2:]
    # constant fill f: sample (x - f) with zero padding, add f back (the weights sum to one)
    shifted = any(fills)
    if shifted:
        ft = torch.tensor(fills, dtype=torch.float32, device=device)[None, :, None, None]
        src = src - ft
    grid = _grid(invs, (sh, sw), out_size, device)
    out = torch.nn.functional.grid_sample(src, grid, mode=interpolation, padding_mode=_PADDING[mode],
                                          align_corners=True)
    if shifted:
        out = out.add_(ft)
    out = out.round_()
    if interpolation == "bicubic":  # overshoots; a bilinear mix of 0..255 values needs no clamp
        out = out.clamp_(0, 255)
    return out if as_float else to_uint8(out.contiguous())


# -- nearest: an exact gather ------------------------------------------------------------------------------
def _nearest_batch(x, invs, out_size, fills, mode, clips=None):
    n, c, h, w = x.shape
    oh, ow = out_size
    frames = [_frame(clips[i] if clips else None, h, w) for i in range(n)]
    views = [_integer_view(x[i], iv, out_size, frames[i]) if is_integer_map(iv) else None
             for i, iv in enumerate(invs)]
    if all(v is not None for v in views):
        if n == 1:
            return views[0].contiguous()[None]
        return torch.stack(views)
    loops = jit.load("warp_jit") if cv.active(x) else None
    if loops is not None:  # one compiled pass per item (see warp_jit), the bytes of the torch form below
        out, dst = cv.new_planes((n, c, oh, ow))
        fill_bytes = np.array(fills, dtype=np.uint8)
        for i, iv in enumerate(invs):
            numbers = _nearest_numbers(iv, out_size, (h, w), mode, clips[i] if clips else None)
            loops.gather_numbers(x[i].reshape(c, h * w).numpy(), numbers.view(-1).numpy(), fill_bytes,
                                 dst[i].reshape(c, oh * ow))
        return out
    index = torch.stack([_nearest_index(iv, out_size, (h, w), mode, clips[i] if clips else None)
                         for i, iv in enumerate(invs)])
    outside = index < 0
    flat = x.reshape(n, c, h * w)
    if n == 1:
        out = flat[0].index_select(1, index[0].clamp(min=0).to(x.device))[None]
    else:
        idx = index.clamp(min=0).to(x.device)
        out = torch.gather(flat, 2, idx[:, None, :].expand(n, c, oh * ow))
    out = out.view(n, c, oh, ow)
    if bool(outside.any()):
        keep = (~outside).to(x.device).view(n, 1, oh, ow)
        ft = torch.tensor(fills, dtype=torch.float32, device=x.device).to(x.dtype).view(1, c, 1, 1)
        out = torch.where(keep, out, ft)
    return out


def _frame(clip, h: int, w: int) -> tuple:
    """The box ``(y0, y1, x0, x1)`` an item may read: its clip box within the image, or the image."""
    if clip is None:
        return 0, h, 0, w
    top, left, ch, cw = (int(v) for v in clip)
    return max(0, top), min(h, top + ch), max(0, left), min(w, left + cw)


def _nearest_index(inv: Matrix, out_size, size, mode: str, clip):
    """Flat input index of every output pixel (CPU int64, ``oh * ow``; -1 outside the image)."""
    return _nearest_numbers(inv, out_size, size, mode, clip).view(-1).to(torch.int64) - 1


def _nearest_numbers(inv: Matrix, out_size, size, mode: str, clip):
    """1 + the flat input index of every output pixel, 0 outside the image (a CPU float ``1 x 1 x oh x ow``
    of whole numbers). Found by ``grid_sample``'s nearest on the CPU over an image of pixel numbers (the same
    region and grid the float form uses), so ties round as it rounds them, and every device gathers the same
    pixels."""
    h, w = size
    if clip is not None or mode == "reflect":
        box = _frame(clip, h, w)
    else:
        box = _source_box(inv, out_size, h, w, 1)
    src = _numbers(h, w)[box[0]:box[1], box[2]:box[3]][None, None]  # flat index + 1: zero padding is outside
    grid = _grid([matmul(translation(-box[2], -box[0]), inv)], src.shape[-2:], out_size, "cpu")
    pad = "edge" if clip is not None else mode
    return torch.nn.functional.grid_sample(src, grid.to(src.dtype), mode="nearest", padding_mode=_PADDING[pad],
                                           align_corners=True)


_NUMBERS: dict = {}


def _numbers(h: int, w: int) -> torch.Tensor:
    """``1 + arange(h * w)`` as an ``h x w`` CPU image, float32 while that is exact (else float64); the
    last few are kept (never written to)."""
    key = (h, w)
    t = _NUMBERS.get(key)
    if t is None:
        if len(_NUMBERS) >= 8:
            _NUMBERS.clear()
        dtype = torch.float64 if h * w + 1 >= 2 ** 24 else torch.float32
        t = _NUMBERS[key] = torch.arange(1, h * w + 1, dtype=dtype, device="cpu").view(h, w)
    return t


def _integer_view(x: torch.Tensor, inv: Matrix, out_size, frame: tuple):
    """An integer map that stays inside the frame as slices, flips and a transpose of ``x`` (a view or a
    flip), or None when it reaches outside."""
    oh, ow = out_size
    fy0, fy1, fx0, fx1 = frame
    (a, b, cx), (d, e, cy) = [[int(round(v)) for v in row] for row in inv[:2]]
    if a == 0:  # a quarter turn: output columns walk input rows
        x, (a, b, cx), (d, e, cy) = x.transpose(-1, -2), (d, e, cy), (a, b, cx)
        fy0, fy1, fx0, fx1 = fx0, fx1, fy0, fy1
    xs = (cx, cx + a * (ow - 1))
    ys = (cy, cy + e * (oh - 1))
    if min(xs) < fx0 or max(xs) >= fx1 or min(ys) < fy0 or max(ys) >= fy1:
        return None
    out = x[..., min(ys):max(ys) + 1, min(xs):max(xs) + 1]
    dims = [d for d, s in ((-2, e), (-1, a)) if s < 0]
    return out.flip(dims) if dims else out


__all__ = ["warp", "warp_batch", "probe", "matmul", "inverse", "translation", "scaling", "rotation", "shearing",
           "center", "box_to_size", "to_uint8", "is_integer_map", "axis_scales", "box_reduce", "IDENTITY", "MODES",
           "INTERPOLATIONS"]
