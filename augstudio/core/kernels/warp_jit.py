"""The CPU loops of exact pixel moves, compiled with numba (BSD-2): ``kernels.warp``'s nearest gather and
the crop / pad window of ``ops.geometry``.

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


def warm_up() -> None:
    """Run the loops once on tiny arrays of the kinds the callers pass (compiled or read from the cache)."""
    src = np.zeros((3, 4), dtype=np.uint8)
    fills = np.zeros(3, dtype=np.uint8)
    for dtype in (np.float32, np.float64):
        gather_numbers(src, np.array([0, 1, 4], dtype=dtype), fills, np.empty((3, 3), dtype=np.uint8))
    pad_constant(np.zeros((3, 4, 4), dtype=np.uint8), -1, -1, fills, np.empty((3, 6, 6), dtype=np.uint8))
