"""The CPU loops of ``kernels.noise``, compiled with numba (BSD-2): the counter hash and the noise add.

numpy runs the hash as 16 passes over the draws and the noise as four more (indices, gather, add, clip);
compiled, the hash is one vectorised pass and the table lookup and saturating add are one pass over the
pixels (for Gaussian noise the two together, row by row). The integer arithmetic is the same, so the bits and pixels are those of the torch form (what a GPU
runs; ``tests/core/test_ops_noise.py`` compares them).

Imported on first use (see ``jit``); each loop compiles once per machine and is cached
next to this file (``__pycache__``), or in numba's user cache where that is read-only.
"""

from __future__ import annotations

import numpy as np
from numba import uint32 as u32

from .jit import compiled


@compiled
def _lowbias32(h):
    h = u32(h ^ (h >> u32(16)))
    h = u32(h * u32(0x7FEB352D))  # numba widens integer products: each step is cut back to 32 bits
    h = u32(h ^ (h >> u32(15)))
    h = u32(h * u32(0x846CA68B))
    return u32(h ^ (h >> u32(16)))


@compiled(inline="always")
def _bits(i, k0, k1):
    """Word ``i`` of ``bits32`` for the keys ``k0``, ``k1``: two keyed rounds of the hash over the counter."""
    return _lowbias32(u32(_lowbias32(u32(u32(i) ^ k0)) ^ k1))


@compiled
def hash_rows(k0, k1, out):
    """``out[j, i] = lowbias32(lowbias32(i ^ k0[j]) ^ k1[j])`` for a C-contiguous uint32 ``out``."""
    for j in range(out.shape[0]):
        a, b = k0[j], k1[j]
        row = out[j]
        for i in range(row.shape[0]):
            row[i] = _bits(i, a, b)


@compiled
def scaled_tables(q, scales, shift, out):
    """``out[j] = rint(q * scales[j]) + shift`` (float32 product, rounded half to even, as the torch form),
    clipped to ``out``'s integer range."""
    lo, hi = np.float32(np.iinfo(out.dtype).min), np.float32(np.iinfo(out.dtype).max)
    for j in range(out.shape[0]):
        s = np.float32(scales[j])
        row = out[j]
        for u in range(q.shape[0]):
            row[u] = min(max(np.rint(q[u] * s), lo), hi)
    if shift != 0:
        out += shift


@compiled
def add_hashed_normal(x, k0, k1, tables, shared, out):
    """``out[j, c, y, i] = clip(x[j, c, y, i] + tables[j, bits16[j, p]], 0, 255)`` for uint8 ``N x C x H x W``
    images (any strides), with ``p = (c * H + y) * W + i``, or ``y * W + i`` when the noise is ``shared`` by
    the channels, and ``bits16`` ``kernels.noise``'s 16-bit values (item j's keys ``k0[j]``, ``k1[j]``: the low
    then the high half of each hash).

    A row's hashes are made just before its lookups, into a buffer that stays in L1: where the hash of the
    whole image went first into an array of 2 bytes a pixel (300 KB at 224 x 224 x 3), read back by the
    lookups. The same values; 100 against 99 us warm, 188 against 238 right after another library's call."""
    n, c, h, w = x.shape
    half = np.empty(w + 4, dtype=np.uint16)
    for j in range(n):
        t = tables[j]
        a, b = k0[j], k1[j]
        for ch in range(c):
            base = 0 if shared else ch * h * w
            for y in range(h):
                p0 = base + y * w
                q0 = p0 >> 1
                for i in range(((p0 + w - 1) >> 1) - q0 + 1):  # the hashes that cover p0 .. p0 + w - 1
                    hh = _bits(q0 + i, a, b)
                    half[2 * i] = np.uint16(hh & u32(0xFFFF))
                    half[2 * i + 1] = np.uint16(hh >> u32(16))
                src, dst = x[j, ch, y], out[j, ch, y]
                row = half[p0 & 1:(p0 & 1) + w]
                for i in range(w):
                    dst[i] = min(max(np.int32(src[i]) + np.int32(t[row[i]]), 0), 255)


_BLOCK = 4096  # pixels hashed at a time
_GUIDE_BITS = 8  # the search starts from a table of the first k of each of 2^8 slices of the uniforms


@compiled
def poisson_bytes(levels, k0, k1, cdf, width, normal, lam_scale, big, exact_max, scale, out):
    """Shot noise of one item, as uint8: ``out[i] = rint(k * scale)`` clipped to 0..255, where k is
    ``poisson_of_levels``' count for level ``levels[i]`` and the 31-bit uniform ``bits32[i] >> 1`` (keys
    ``k0``, ``k1``): the smallest k with ``cdf[level * width + k] > u`` (each level's last entry is 2^31),
    or, for a rate above ``exact_max`` when ``big``, the rounded normal approximation.

    The search starts from a guide table (Chen and Asau): for every level and every slice of the uniforms'
    range, the smallest k whose CDF entry exceeds the slice's lowest value. It is at or below the answer, so
    the search only walks up, and a step or none is all it takes."""
    shift = u32(31 - _GUIDE_BITS)
    slices = 1 << _GUIDE_BITS
    guide = np.empty((256, slices), dtype=np.int32)
    for v in range(256):
        base, k = v * width, 0
        for g in range(slices):
            low = u32(g) << shift
            while cdf[base + k] <= low:
                k += 1
            guide[v, g] = k
    lo, hi = np.float32(0.0), np.float32(255.0)
    n = levels.shape[0]
    bits = np.empty(_BLOCK, dtype=np.uint32)
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for j in range(m):  # the hash alone vectorises; the search below cannot
            bits[j] = u32(_bits(start + j, k0, k1) >> u32(1))
        for j in range(m):
            u = bits[j]
            v = np.int64(levels[start + j])
            lam = np.float32(v) * lam_scale
            if big and lam > exact_max:
                count = max(np.rint(lam + np.sqrt(lam) * normal[u >> u32(15)]), np.float32(0.0))
            else:
                base = v * width
                k = np.int64(guide[v, u >> shift])
                while cdf[base + k] <= u:
                    k += 1
                count = np.float32(k)
            out[start + j] = np.uint8(min(max(np.rint(count * scale), lo), hi))


@compiled
def speckle_bytes(x, k0, k1, normal, std, out):
    """Multiplicative noise of one item, as uint8: ``out[i] = rint(x[i] * (z_i * std + 1))`` clipped to
    0..255 in float32, with z_i the normal quantile of ``bits16[i]`` (keys ``k0``, ``k1``; the low then the
    high half of each hash): the torch form's three float passes, one rounding at a time, in one pass."""
    one, lo, hi = np.float32(1.0), np.float32(0.0), np.float32(255.0)
    n = x.shape[0]
    bits = np.empty(_BLOCK // 2, dtype=np.uint32)
    for start in range(0, n, _BLOCK):  # _BLOCK is even: element start + j is half (j & 1) of hash start/2 + j/2
        m = min(_BLOCK, n - start)
        first = start >> 1
        for j in range((m + 1) >> 1):
            bits[j] = _bits(first + j, k0, k1)
        for j in range(m):
            h = bits[j >> 1]
            b = (h >> u32(16)) if j & 1 else (h & u32(0xFFFF))
            factor = normal[b] * std + one
            out[start + j] = np.uint8(min(max(np.rint(np.float32(x[start + j]) * factor), lo), hi))


@compiled
def salt_pepper_bytes(x, k0, k1, amount, salt, out):
    """Salt and pepper of one item (uint8 planes ``C x P``): pixel p is hit where its uniform
    ``bits32[p] >> 8`` / 2^24 is below ``amount``, and then white in every plane where the uniform of
    ``bits32[P + p]`` is below ``salt``, else black (float32 comparisons, as the torch form's)."""
    planes, n = x.shape[0], x.shape[1]
    unit = np.float32(1.0 / (1 << 24))
    bits = np.empty(_BLOCK, dtype=np.uint32)
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for j in range(m):
            bits[j] = _bits(start + j, k0, k1)
        for j in range(m):
            p = start + j
            if np.float32(bits[j] >> u32(8)) * unit < amount:
                h = _bits(n + p, k0, k1)
                value = np.uint8(255) if np.float32(h >> u32(8)) * unit < salt else np.uint8(0)
                for c in range(planes):
                    out[c, p] = value
            else:
                for c in range(planes):
                    out[c, p] = x[c, p]


def warm_up() -> None:
    """Run each loop once on tiny arrays of the kinds the kernels pass (compiled or read from the cache)."""
    k = np.zeros(1, dtype=np.uint32)
    idx = np.zeros((1, 8), dtype=np.uint32)
    hash_rows(k, k, idx)
    q = np.zeros(4, dtype=np.float32)
    x = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    for dtype in (np.int8, np.int16):
        tables = np.zeros((1, 65536), dtype=dtype)
        scaled_tables(q, np.ones(1, dtype=np.float32), 0, tables)
        for shared in (False, True):
            add_hashed_normal(x, k, k, tables, shared, np.empty_like(x))
    cdf = np.full(2 * 256, 1 << 31, dtype=np.uint32)
    poisson_bytes(np.zeros(4, dtype=np.uint8), k[0], k[0], cdf, 2, q, np.float32(1.0), False, np.float32(600.0),
                  np.float32(1.0), np.empty(4, dtype=np.uint8))
    speckle_bytes(np.zeros(4, dtype=np.uint8), k[0], k[0], q, np.float32(0.1), np.empty(4, dtype=np.uint8))
    salt_pepper_bytes(np.zeros((3, 4), dtype=np.uint8), k[0], k[0], np.float32(0.5), np.float32(0.5),
                      np.empty((3, 4), dtype=np.uint8))
