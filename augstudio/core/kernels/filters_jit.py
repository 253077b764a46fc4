"""The CPU loop of ``kernels.filters.sharpen``, compiled with numba (BSD-2): torchvision's adjust_sharpness of
uint8 planes in one pass, byte for byte.

torchvision smooths in float32 with the weights 1/13 and 5/13 and rounds: the value is n / 13 for a whole n
(the 3x3 sum plus 4 times the centre), never within 1/26 of a half level, so the rounding is exactly the
integer one, ``(2 n + 13) // 26``. Its blend, ``x.add_(s - x, alpha=1 - f)``, is torch's add with alpha,
the same kernel as the grey's sums: fused multiply-add on its AVX2 / AVX-512 kernels, not on ``default``;
the loop takes the form ``kernels.color`` found torch to run. One pass over the image where OpenCV took a
filter and a blend per plane (0.77 ms at 512 x 512 x 3) and torch a float copy, a convolution and three
more passes.

Imported on first use; compiled once per machine and cached next to this file.
"""

from __future__ import annotations

import numpy as np

from .color_jit import fma
from .jit import compiled


@compiled
def sharpen_fused(src, weight, out):
    """``out`` = torchvision's ``adjust_sharpness`` of uint8 planes ``src`` (``C x H x W``, H and W at least
    3, rows contiguous) with ``weight`` = 1 - factor, blended as torch's fused kernels blend. The border rows
    and columns are copied, as torchvision leaves them."""
    _sharpen(src, weight, True, out)


@compiled
def sharpen_unfused(src, weight, out):
    """``sharpen_fused`` blended as torch's ``default`` kernels blend (the product rounded, then the sum)."""
    _sharpen(src, weight, False, out)


@compiled(inline="always")
def _sharpen(src, weight, fused, out):
    """The loop; inlined into the two above with ``fused`` a constant, which takes its test out of the pixel
    loop (12% of the time when it was an argument)."""
    w = np.float32(weight)
    zero, top = np.float32(0.0), np.float32(255.0)
    h, wd = src.shape[1], src.shape[2]
    n = wd - 2
    for k in range(src.shape[0]):
        for y in range(1, h - 1):
            up, mid, dn = src[k, y - 1], src[k, y], src[k, y + 1]
            # 1-D views indexed from 0: a loop over i - 1 / i + 1 does not vectorise (numba's index checks)
            u0, u1, u2, m0, m1, m2 = up[0:n], up[1:n + 1], up[2:n + 2], mid[0:n], mid[1:n + 1], mid[2:n + 2]
            d0, d1, d2, o = dn[0:n], dn[1:n + 1], dn[2:n + 2], out[k, y, 1:n + 1]
            for q in range(n):
                c = np.int32(m1[q])
                t = (np.int32(u0[q]) + np.int32(u1[q]) + np.int32(u2[q]) + np.int32(m0[q]) + np.int32(m2[q])
                     + np.int32(d0[q]) + np.int32(d1[q]) + np.int32(d2[q]) + np.int32(5) * c)
                s = np.float32(np.int32((np.uint32(2) * np.uint32(t) + np.uint32(13)) // np.uint32(26)))  # t / 13, rounded
                xf = np.float32(c)
                v = fma(s - xf, w, xf) if fused else xf + (s - xf) * w
                o[q] = np.uint8(np.int32(min(max(v, zero), top)))  # >= 0: truncation, as torch's cast
    # the border, in a loop of its own: written in the one above, it cost 10% of the time
    for k in range(src.shape[0]):
        for i in range(wd):
            out[k, 0, i] = src[k, 0, i]
            out[k, h - 1, i] = src[k, h - 1, i]
        for y in range(1, h - 1):
            out[k, y, 0] = src[k, y, 0]
            out[k, y, wd - 1] = src[k, y, wd - 1]


def warm_up() -> None:
    """Run the loop once on tiny arrays of the kinds the callers pass (compiled or read from the cache)."""
    src = np.zeros((1, 3, 3), dtype=np.uint8)
    for fused in (True, False):
        (sharpen_fused if fused else sharpen_unfused)(src, 0.5, np.empty((1, 3, 3), dtype=np.uint8))
