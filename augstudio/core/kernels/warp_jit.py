"""The CPU loops of exact pixel moves, compiled with numba (BSD-2): ``kernels.warp``'s nearest gather and
probe sample, and the crop / pad window of ``ops.geometry``.

``warp``'s nearest finds each output pixel's source by ``grid_sample`` over an image of pixel numbers (so
ties round as torch rounds them, on every device). What follows on an accelerator is torch's: the numbers
to int64 indices, ``index_select`` per channel, and ``where`` for the pixels outside. On the CPU those four
passes and their temporaries (megabytes of int64 indices at 512 x 512, fresh pages on every call) are this
one loop. It copies bytes, so the pixels are the torch form's exactly (``tests/core/test_kernels_warp.py``).

Imported on first use (see ``jit``); compiled once per machine and cached next to this file.
"""

from __future__ import annotations

import numpy as np

from .jit import compiled


@compiled
def gather_numbers(src, numbers, fills, out):
    """``out[c, p] = src[c, numbers[p] - 1]`` for uint8 planes ``src`` (``C x H*W``) and ``out`` (``C x N``);
    ``fills[c]`` where ``numbers[p]`` is 0 (outside the image). ``numbers`` holds whole numbers (float).
    The indices once, then one plane at a time (measured 0.26-0.46 ms at 512 x 512 x 3 against 0.65 for one
    pass over pixels with the channels inside)."""
    n = numbers.shape[0]
    index = np.empty(n, dtype=np.int32)
    for p in range(n):
        index[p] = np.int32(numbers[p]) - 1
    for k in range(src.shape[0]):
        plane, dst, fill = src[k], out[k], fills[k]
        for p in range(n):
            i = index[p]
            dst[p] = plane[i] if i >= 0 else fill


@compiled
def pad_constant(src, top, left, fills, out):
    """``out[c]`` = the window of ``src[c]`` (uint8 planes, ``C x h x w``) whose corner is (``top``,
    ``left``), of ``out``'s size, with ``fills[c]`` outside; the window overlaps ``src``. One call for every
    plane, where OpenCV's copyMakeBorder takes one per plane: 16-18 against 21 us for pad 4 at 512 x 512 x 3
    (albumentations' one call on interleaved pixels: 18.5-19.4).

    Kept this plain on purpose: the copy through 1-D views indexed from 0 (a loop over ``left + q`` into the
    row does not vectorise: numba's negative-index check), and the fill with no per-pixel index map (the same
    loop with edge / reflect columns took 47 us, which is why those modes stay with OpenCV)."""
    h, w = src.shape[1], src.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    x0, x1 = max(left, 0), min(left + ow, w)
    a, b = x0 - left, x1 - left  # out's columns [a, b) are src's [x0, x1)
    for k in range(src.shape[0]):
        fill = fills[k]
        for r in range(oh):
            row = out[k, r]
            sr = top + r
            if sr < 0 or sr >= h:
                for q in range(ow):
                    row[q] = fill
                continue
            mid, part = row[a:b], src[k, sr, x0:x1]
            for q in range(b - a):
                mid[q] = part[q]
            for q in range(a):
                row[q] = fill
            for q in range(b, ow):
                row[q] = fill


@compiled(inline="always")
def _border_index(s, n, mode):
    """The pixel a whole-number coordinate ``s`` (float) reads: itself inside ``0 .. n - 1``, else the nearest
    edge pixel (mode 1) or its mirror without repeating the edge (mode 2, OpenCV's REFLECT_101: -1 -> 1,
    n -> n - 2)."""
    if 0.0 <= s < n:
        return int(s)
    if mode == 1:
        return 0 if s < 0.0 else n - 1
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = int(abs(s) % period)
    return period - i if i >= n else i


_ROUND = 6755399441055744.0  # 1.5 * 2^52: (s + it) - it is s rounded half to even, as np.rint, for |s| < 2^51


@compiled
def nearest_affine(src, inv, mode, fills, out):
    """``out[k, v, u] = src[k, iy, ix]`` for uint8 planes ``src`` (``C x H x W``, any strides) and ``out``
    (``C x oh x ow``): ``(ix, iy)`` is ``inv`` (2 x 3, float64) times ``(u, v, 1)``, computed in float64 as
    ``(a u + b v) + c`` and rounded half to even. Outside the image: ``fills[k]`` (mode 0), the nearest edge
    pixel (1), or the mirror without repeating the edge (2).

    ``kernels.warp.probe``'s sample, in one call for every plane: a row's source pixels first (a loop that
    vectorises), then each plane's gather. OpenCV's nearest warp, plane by plane, gives these pixels where
    Intel's IPP kernels run (float64 coordinates; its own kernels compute them in float32)."""
    c, h, w = src.shape[0], src.shape[1], src.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    a, b, cx = inv[0, 0], inv[0, 1], inv[0, 2]
    d, e, cy = inv[1, 0], inv[1, 1], inv[1, 2]
    big = np.float64(_ROUND)
    fx = np.empty(ow, dtype=np.float64)
    fy = np.empty(ow, dtype=np.float64)
    ix = np.empty(ow, dtype=np.int64)
    iy = np.empty(ow, dtype=np.int64)
    for v in range(oh):
        bv, ev = b * v, e * v
        for u in range(ow):
            fx[u] = ((a * u + bv) + cx + big) - big
            fy[u] = ((d * u + ev) + cy + big) - big
        outside = False
        for u in range(ow):
            sx, sy = fx[u], fy[u]
            if 0.0 <= sx < w and 0.0 <= sy < h:
                ix[u], iy[u] = int(sx), int(sy)
            elif mode == 0:
                ix[u], outside = -1, True
            else:
                ix[u], iy[u] = _border_index(sx, w, mode), _border_index(sy, h, mode)
        for k in range(c):
            plane, row, fill = src[k], out[k, v], fills[k]
            if outside:
                for u in range(ow):
                    row[u] = plane[iy[u], ix[u]] if ix[u] >= 0 else fill
            else:
                for u in range(ow):
                    row[u] = plane[iy[u], ix[u]]


def warm_up() -> None:
    """Run the loops once on tiny arrays of the kinds the callers pass (compiled or read from the cache)."""
    src = np.zeros((3, 4), dtype=np.uint8)
    fills = np.zeros(3, dtype=np.uint8)
    for dtype in (np.float32, np.float64):
        gather_numbers(src, np.array([0, 1, 4], dtype=dtype), fills, np.empty((3, 3), dtype=np.uint8))
    pad_constant(np.zeros((3, 4, 4), dtype=np.uint8), -1, -1, fills, np.empty((3, 6, 6), dtype=np.uint8))
    inv = np.array(((1.0, 0.0, -1.0), (0.0, 1.0, 0.5)))
    planes = np.zeros((3, 4, 4), dtype=np.uint8)
    for src in (planes, planes[:, :, ::2], planes.transpose(0, 2, 1)):  # contiguous, strided and transposed views
        nearest_affine(src, inv, 0, fills, np.empty((3, 2, 2), dtype=np.uint8))
