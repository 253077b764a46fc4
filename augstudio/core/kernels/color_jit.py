"""The CPU loops of ``kernels.color`` that numpy and OpenCV cannot do in one pass, compiled with numba (BSD-2):
torchvision's grey, its sum, the saturation blend, the hue rotation, the colour tables and solarize.

The grey is torchvision's float32 ``0.2989 r + 0.587 g + 0.114 b``, floored. torch computes the two sums
with fused multiply-adds in its AVX2 / AVX-512 kernels and without them in its ``default`` kernels, and
the two differ in 21 of the 16.7M colours (``FMA_COLOURS``); each loop here comes in both forms, and
``kernels.color`` asks torch which one it runs, so the CPU grey is torch's grey byte for byte on every
machine. One compiled pass per image, where torch makes three float passes and numpy four. The hue
rotation is the torch form's float32 HSV round trip, pixel by pixel: exact, and 3x OpenCV's float HSV.

Imported on first use; compiled once per machine and cached next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic

from .color import GRAY_WEIGHTS
from .jit import compiled

_W0, _W1, _W2 = (np.float32(w) for w in GRAY_WEIGHTS)

# r << 16 | g << 8 | b of the colours whose grey floors one level apart with and without fused
# multiply-adds (tests/core/test_kernels_color.py recomputes the list)
FMA_COLOURS = (1349639, 2684148, 2686032, 7237402, 9216081, 9235479, 9239747, 11156906, 12496846, 14474804,
               15131057, 15785647, 16386532, 16388416, 16396231, 16398115, 16408535, 16413966, 16418234,
               16427933, 16447331)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's fma: the hardware instruction where there is one)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@compiled(inline="always")
def _grey(r, g, b, fused):
    """The unfloored grey of one pixel, as torch's ``mul(r, w0).add_(g, alpha=w1).add_(b, alpha=w2)``."""
    if fused:
        return fma(np.float32(b), _W2, fma(np.float32(g), _W1, np.float32(r) * _W0))
    return (np.float32(r) * _W0 + np.float32(g) * _W1) + np.float32(b) * _W2


@compiled
def gray(src, fused, out):
    """``out`` (uint8 ``H x W``) = the floored grey of uint8 RGB planes ``src`` (``3 x H x W``, any strides)."""
    for y in range(src.shape[1]):
        r, g, b, o = src[0, y], src[1, y], src[2, y], out[y]
        for i in range(r.shape[0]):
            o[i] = np.uint8(_grey(r[i], g[i], b[i], fused))  # >= 0: truncation floors


@compiled
def gray_sum(src, fused):
    """The sum of the floored grey of uint8 RGB planes ``3 x H x W`` (whole numbers: exact, in any order)."""
    total = 0
    for y in range(src.shape[1]):
        r, g, b = src[0, y], src[1, y], src[2, y]
        for i in range(r.shape[0]):
            total += np.int64(_grey(r[i], g[i], b[i], fused))
    return total


@compiled
def saturate(src, factor, fused, out):
    """torchvision's ``adjust_saturation`` of uint8 RGB planes: ``floor(clamp(x f + floor(grey) (1 - f)))``
    with torch's float32 roundings (each product rounded, then their sum), into ``out`` (``3 x H x W``)."""
    f = np.float32(factor)
    f1 = np.float32(1.0 - factor)  # torch rounds the Python float 1 - f to float32
    zero, top = np.float32(0.0), np.float32(255.0)
    for y in range(src.shape[1]):
        r, g, b = src[0, y], src[1, y], src[2, y]
        orow, grow, brow = out[0, y], out[1, y], out[2, y]
        for i in range(r.shape[0]):
            gf = np.float32(np.uint8(_grey(r[i], g[i], b[i], fused))) * f1
            orow[i] = np.uint8(min(max(np.float32(r[i]) * f + gf, zero), top))
            grow[i] = np.uint8(min(max(np.float32(g[i]) * f + gf, zero), top))
            brow[i] = np.uint8(min(max(np.float32(b[i]) * f + gf, zero), top))


@compiled(inline="always")
def _wrap_unit(a):
    """``torch.remainder(a, 1.0)`` for a in [-1, 2) (a hue plus a shift of at most half a turn), exactly:
    fmod is exact there (a - 1 is, by Sterbenz' lemma), and a negative remainder gets 1 added, rounded as
    torch rounds it."""
    m = a - np.float32(1.0) if a >= np.float32(1.0) else a
    return m + np.float32(1.0) if m < np.float32(0.0) else m


@compiled(inline="always")
def _by_sextant(i, a0, a1, a2, a3, a4, a5):
    """``(a0, ..., a5)[i]`` for a sextant ``i`` given as a float 0.0 .. 5.0, as single-condition selects (LLVM
    vectorises these; nested conditional expressions became branches, 60x slower)."""
    a = a0
    a = a1 if i == np.float32(1) else a
    a = a2 if i == np.float32(2) else a
    a = a3 if i == np.float32(3) else a
    a = a4 if i == np.float32(4) else a
    return a5 if i == np.float32(5) else a


@compiled
def shift_hue(src, factor, out):
    """torchvision v2's ``adjust_hue`` of uint8 RGB planes ``3 x H x W`` by ``factor`` turns (|factor| <= 0.5)
    into ``out``: the float32 operations of ``color.rgb_to_hsv`` / ``hsv_to_rgb`` one pixel at a time, in
    the same order (no fused multiply-adds, divisions as divisions), so the bytes are the torch form's."""
    inv255 = np.float32(1.0 / 255)
    sixth = np.float32(1.0 / 6.0)
    top = np.float32(255.0 + 1.0 - 1e-3)
    one, zero = np.float32(1.0), np.float32(0.0)
    shift = np.float32(factor)
    for y in range(src.shape[1]):
        rr, gg, bb = src[0, y], src[1, y], src[2, y]
        ro, go, bo = out[0, y], out[1, y], out[2, y]
        for k in range(rr.shape[0]):
            r = np.float32(rr[k]) * inv255
            g = np.float32(gg[k]) * inv255
            b = np.float32(bb[k]) * inv255
            maxc = max(r, max(g, b))
            minc = min(r, min(g, b))
            eqc = maxc == minc
            span = maxc - minc
            s = span / (one if eqc else maxc)
            div = one if eqc else span
            rc = (maxc - r) / div
            gc = (maxc - g) / div
            bc = (maxc - b) / div
            hr = bc - gc
            hg = (rc + np.float32(2.0)) - bc
            hb = (gc + np.float32(4.0)) - rc
            # one condition per select: LLVM vectorises these, where nested ones became branches (60x slower)
            hh = hb
            hh = hg if maxc == g else hh
            hh = hr if maxc == r else hh
            h = _wrap_unit(hh * sixth + one)  # fmod(., 1) of a value in [5/6, 11/6]
            h = _wrap_unit(h + shift)
            h6 = h * np.float32(6.0)
            fi = np.floor(h6)
            f = h6 - fi
            # the sextant as a float (0.0 .. 5.0): an int32 among the float32 lanes kept LLVM from vectorising
            i = fi - np.float32(6.0) if fi >= np.float32(6.0) else fi  # h6 may round up to 6.0: remainder(6)
            sxf = s * f
            one_minus_s = one - s
            q = min(max((one - sxf) * maxc, zero), one)
            t = min(max((sxf + one_minus_s) * maxc, zero), one)
            p = min(max(one_minus_s * maxc, zero), one)
            v = maxc
            # the sextant's (r, g, b) of (v, p, q, t): color._SEXTANT
            ro[k] = np.uint8(_by_sextant(i, v, q, p, p, t, v) * top)
            go[k] = np.uint8(_by_sextant(i, t, v, v, q, p, p) * top)
            bo[k] = np.uint8(_by_sextant(i, p, p, t, v, v, q) * top)


@compiled
def gamma_table(unit, gamma, out):
    """``kernels.color.gamma_table`` in one call: ``out[v] = uint8(min(float32(unit[v] ** gamma), 1) *
    255.999)`` with the power in float64 (the C library's ``pow``), rounded once to float32."""
    cap, top = np.float32(1.0), np.float32(255.999)
    for v in range(256):
        out[v] = np.uint8(min(np.float32(unit[v] ** gamma), cap) * top)


@compiled
def affine_table(scale, offset, shifted, out):
    """``kernels.color.affine_table`` in one call: ``out[v] = uint8(clamp(float32(v) * scale (+ offset),
    0, 255))`` in float32 (the cast truncates: the floor of values >= 0)."""
    lo, hi = np.float32(0.0), np.float32(255.0)
    for v in range(256):
        t = np.float32(v) * scale
        if shifted:
            t = t + offset
        out[v] = np.uint8(min(max(t, lo), hi))


@compiled
def solarize(src, level, out):
    """``out = 255 - src`` where ``src >= level``, else ``src`` (uint8, 1-D, ``level`` uint8 in 1..255): a
    compare and an xor per byte, which vectorises. On an AVX2 machine 22 us at 512 x 512 x 3, where a byte
    table took 114 (stringzilla's translate) to 289 (OpenCV's LUT)."""
    full, none = np.uint8(255), np.uint8(0)
    for i in range(src.shape[0]):
        v = src[i]
        out[i] = v ^ (full if v >= level else none)


def warm_up() -> None:
    """Run each loop once on tiny arrays of the kinds the kernels pass (compiled or read from the cache)."""
    src = np.zeros((3, 2, 2), dtype=np.uint8)
    gray(src, True, np.empty((2, 2), dtype=np.uint8))
    gray_sum(src, True)
    saturate(src, 0.5, True, np.empty_like(src))
    shift_hue(src, 0.1, np.empty_like(src))
    gamma_table(np.linspace(0.0, 1.0, 256), 1.5, np.empty(256, dtype=np.uint8))
    affine_table(np.float32(1.5), np.float32(-3.0), True, np.empty(256, dtype=np.uint8))
    solarize(src.reshape(-1), np.uint8(128), np.empty(12, dtype=np.uint8))
