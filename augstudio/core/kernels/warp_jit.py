"""The CPU loop of ``kernels.warp``'s nearest gather, compiled with numba (BSD-2).

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


def warm_up() -> None:
    """Run the loop once on tiny arrays of the kinds ``warp`` passes (compiled or read from the cache)."""
    src = np.zeros((3, 4), dtype=np.uint8)
    fills = np.zeros(3, dtype=np.uint8)
    for dtype in (np.float32, np.float64):
        gather_numbers(src, np.array([0, 1, 4], dtype=dtype), fills, np.empty((3, 3), dtype=np.uint8))
