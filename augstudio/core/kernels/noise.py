"""Counter-based random numbers for noise tensors: value ``i`` of a noise tensor is a hash of (seed, i), made
with integer tensor arithmetic on the tensor's own device. No generator state is involved, so

* the same seed gives the same noise on the CPU, on CUDA or on MPS (bit for bit: only integer operations
  decide the draws);
* the noise is made where the image is: a GPU batch draws its noise on the GPU, no CPU round trip;
* a batch of N items draws all its noise in one pass, each item from its own seed, and every item equals
  the noise it gets alone.

The hash is Chris Wellons' ``lowbias32`` (two rounds keyed by a splitmix64 of the seed) on int32 lanes, whose
products wrap mod 2^32 on every device. The 16-bit halves of each hash index a 65536-level table of normal
quantiles (exact quantiles at (u + 0.5) / 65536; tails end at +-4.3 sigma); Poisson draws invert the CDF
exactly with 31-bit integer uniforms for rates up to ``POISSON_EXACT`` and use a normal approximation above.

On the CPU the same integer arithmetic runs compiled (``noise_jit``, numba: one vectorised pass where numpy
took 16, ~10x faster); Gaussian, speckle, Poisson and salt-and-pepper noise are each one compiled pass per
item over the image (hash, draw and the pixel's new value), and the other tables are gathered with torch's
``index_select`` on int32 indices: the bits, and so the noise, are identical to the torch form
(tests/core/test_ops_noise.py).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from . import cv, jit
from .warp import to_uint8

MASK32 = 0xFFFFFFFF
POISSON_EXACT = 600.0  # rates above this draw from N(lam, lam) (skew below 0.04)
_TABLES: dict = {}


def _signed32(c: int) -> int:
    return c - (1 << 32) if c >= (1 << 31) else c


_M1, _M2 = _signed32(0x7FEB352D), _signed32(0x846CA68B)


def _lowbias32_(x: torch.Tensor) -> torch.Tensor:
    """Wellons' lowbias32 on int32 bit patterns, in place (two's-complement products wrap mod 2^32, the
    same on every device; shifts are made logical by masking)."""
    x ^= (x >> 16) & 0xFFFF
    x *= _M1
    x ^= (x >> 15) & 0x1FFFF
    x *= _M2
    x ^= (x >> 16) & 0xFFFF
    return x


def _splitmix64(v: int) -> int:
    v = (v + 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return v ^ (v >> 31)


def _keys(seeds, device) -> tuple[torch.Tensor, torch.Tensor]:
    mixed = [_splitmix64(int(v)) for v in seeds]
    k0 = torch.tensor([_signed32(m & MASK32) for m in mixed], dtype=torch.int32, device=device)
    k1 = torch.tensor([_signed32(m >> 32) for m in mixed], dtype=torch.int32, device=device)
    return k0.view(-1, 1), k1.view(-1, 1)


def _on_cpu(device) -> bool:
    """Does the CPU form run? (On the CPU, unless ``cv.torch_only()`` asks for the torch form or numba is
    missing.)"""
    return cv.on_cpu(device) and cv.enabled() and jit.load("noise_jit") is not None


def _np_bits32(seeds: list[int], n: int) -> np.ndarray:
    """``bits32`` as a uint32 numpy array (the same bits), hashed in one compiled pass (callers check
    ``_on_cpu`` first, which says the loops are loaded)."""
    noise_jit = jit.load("noise_jit")
    mixed = [_splitmix64(int(v)) for v in seeds]
    k0 = np.array([m & MASK32 for m in mixed], dtype=np.uint32)
    k1 = np.array([m >> 32 for m in mixed], dtype=np.uint32)
    out = np.empty((len(seeds), n), dtype=np.uint32)
    noise_jit.hash_rows(k0, k1, out)
    return out


def _np_bits16(seeds: list[int], n: int) -> np.ndarray:
    """``bits16`` as a uint16 numpy array: the low then the high half of each hash."""
    h = _np_bits32(seeds, (n + 1) // 2)
    if sys.byteorder == "little":
        return h.view(np.uint16)[:, :n]
    return np.stack([h & 0xFFFF, h >> 16], axis=-1).astype(np.uint16).reshape(len(seeds), -1)[:, :n]


def bits32(seeds: list[int], n: int, device) -> torch.Tensor:
    """``len(seeds) x n`` int32 tensor of uniform 32-bit patterns: row j from seed j (two keyed rounds of
    the hash over the counter)."""
    if _on_cpu(device):
        return torch.from_numpy(_np_bits32(seeds, n).view(np.int32))
    k0, k1 = _keys(seeds, device)
    x = torch.arange(n, dtype=torch.int32, device=device).view(1, -1) ^ k0
    x = _lowbias32_(x)
    x ^= k1
    return _lowbias32_(x)


def bits16(seeds: list[int], n: int, device) -> torch.Tensor:
    """``len(seeds) x n`` int32 tensor of uniform 16-bit values (two per hash)."""
    if _on_cpu(device):
        return torch.from_numpy(_np_bits16(seeds, n).astype(np.int32))
    h = bits32(seeds, (n + 1) // 2, device)
    return torch.stack([h & 0xFFFF, (h >> 16) & 0xFFFF], dim=-1).reshape(len(seeds), -1)[:, :n]


def uniform(seeds: list[int], shape, device) -> torch.Tensor:
    """``len(seeds) x *shape`` float32 uniforms in [0, 1) (24 random bits each)."""
    n = math.prod(int(s) for s in shape)
    if _on_cpu(device):
        u = (_np_bits32(seeds, n) >> 8).astype(np.float32)
        u *= np.float32(1.0 / (1 << 24))
        return torch.from_numpy(u).view(len(seeds), *shape)
    u = ((bits32(seeds, n, device) >> 8) & 0xFFFFFF).to(torch.float32).mul_(1.0 / (1 << 24))
    return u.view(len(seeds), *shape)


def random_bytes(seeds: list[int], shape, device) -> torch.Tensor:
    """``len(seeds) x *shape`` uint8 uniforms."""
    n = math.prod(int(s) for s in shape)
    if _on_cpu(device):
        return torch.from_numpy(_np_bits32(seeds, n).astype(np.uint8)).view(len(seeds), *shape)
    return (bits32(seeds, n, device) & 0xFF).to(torch.uint8).view(len(seeds), *shape)


def normal_table(device) -> torch.Tensor:
    """The 65536 standard-normal quantiles at (u + 0.5) / 65536, float32, on ``device``."""
    key = ("normal", str(device))
    t = _TABLES.get(key)
    if t is None:
        q = (torch.arange(65536, dtype=torch.float64, device="cpu") + 0.5) / 65536.0
        t = _TABLES[key] = torch.special.ndtri(q).to(device=device, dtype=torch.float32)
    return t


def standard_normal(seeds: list[int], shape, device) -> torch.Tensor:
    """``len(seeds) x *shape`` float32 N(0, 1) values."""
    n = math.prod(int(s) for s in shape)
    return normal_table(device).index_select(0, bits16(seeds, n, device).reshape(-1)).view(len(seeds), *shape)


def scaled_normal_int16(seeds: list[int], shape, device, scales: list[float]) -> torch.Tensor:
    """round(scale_j * N(0, 1)) as int16 for row j: the table is scaled and rounded once per row (65536
    values) instead of at every pixel (the device form of ``add_scaled_normal``)."""
    table = normal_table(device)
    rows = []
    for scale in scales:
        t = (table * float(scale)).round_()
        if abs(scale) * 4.5 >= 32767:  # the table ends at +-4.3: smaller scales cannot leave int16
            t = t.clamp_(-32768, 32767)
        rows.append(t.to(torch.int16))
    idx = bits16(seeds, math.prod(int(s) for s in shape), device)
    if len(rows) == 1:
        return rows[0].index_select(0, idx.reshape(-1)).view(1, *shape)
    return torch.gather(torch.stack(rows), 1, idx.to(torch.int64)).view(len(seeds), *shape)


def add_scaled_normal(x: torch.Tensor, seeds: list[int], scales: list[float], shift: int, channels: int
                      ) -> torch.Tensor:
    """uint8 ``N x C x H x W`` plus round(scale_j * N(0, 1)) + shift for item j, saturated to 0..255; the
    noise has ``channels`` planes (C, or 1 shared by all). The same pixels as
    ``x + scaled_normal_int16(...) + shift`` on any device."""
    n, c, h, w = x.shape
    if not (cv.active(x) and _on_cpu(cv.device_of(x))):  # the compiled pass takes uint8 on the CPU
        noise = scaled_normal_int16(seeds, (channels, h, w), x.device, scales)
        if shift:
            noise = noise.add_(shift)
        return x.to(torch.int16).add_(noise).clamp_(0, 255).to(torch.uint8)
    noise_jit = jit.load("noise_jit")
    # one table per item, looked up and added in one pass: int8 where every value fits (half the table's
    # bytes in cache), as the table ends at +-4.3 sigma
    small = shift == 0 and max(abs(float(v)) for v in scales) * 4.5 < 127
    tables = np.empty((n, 65536), dtype=np.int8 if small else np.int16)
    noise_jit.scaled_tables(normal_table("cpu").numpy(), np.asarray(scales, dtype=np.float32), shift, tables)
    mixed = [_splitmix64(int(v)) for v in seeds]  # bits16's keys (_np_bits32)
    k0 = np.array([m & MASK32 for m in mixed], dtype=np.uint32)
    k1 = np.array([m >> 32 for m in mixed], dtype=np.uint32)
    out = np.empty((n, c, h, w), dtype=np.uint8)
    noise_jit.add_hashed_normal(x.numpy(), k0, k1, tables, channels < c, out)
    return torch.from_numpy(out)


def poisson_bytes(x: torch.Tensor, seeds: list[int], peaks: list[float]) -> torch.Tensor:
    """Shot noise on uint8 ``N x C x H x W``: ``round(k * 255 / peak_j)`` clipped to 0..255 as uint8, with k
    from ``poisson_of_levels``. On the CPU one compiled pass per item (the hash, a guided search and the
    scaling; ``noise_jit.poisson_bytes``), without the numpy search's megabytes of temporaries: the same
    bytes."""
    compiled = _compiled_items(x, (-1,))
    if compiled is not None:
        noise_jit, levels, out = compiled
        normal = normal_table("cpu").numpy()
        for j, peak in enumerate(peaks):
            cdf, kmax, big = _cdf_table(float(peak))
            noise_jit.poisson_bytes(levels[j], *_cpu_keys(seeds[j]),
                                    cdf.numpy().astype(np.uint32).reshape(-1), kmax + 1, normal,
                                    np.float32(float(peak) / 255.0), big, np.float32(POISSON_EXACT),
                                    np.float32(255.0 / float(peak)), out[j])
        return torch.from_numpy(out).view(x.shape)
    k = poisson_of_levels(x, seeds, peaks)
    scale = torch.tensor([255.0 / p for p in peaks], dtype=torch.float32, device=x.device)
    return to_uint8(k.mul_(scale.view(-1, 1, 1, 1)).round_().clamp_(0, 255))


def _compiled_items(x: torch.Tensor, shape: tuple):
    """(``noise_jit``, the items of ``x`` as a uint8 array ``N x *shape``, an output array like it) where
    the compiled loops take ``x`` (uint8 on the CPU), else None (the torch form runs)."""
    if not (cv.active(x) and _on_cpu(cv.device_of(x))):  # as add_scaled_normal decides
        return None
    src = x.reshape(x.shape[0], *shape).contiguous().numpy()
    return jit.load("noise_jit"), src, np.empty(src.shape, dtype=np.uint8)


def _cpu_keys(seed: int) -> tuple[np.uint32, np.uint32]:
    """The hash keys of ``bits32`` for one seed, as the compiled loops take them."""
    m = _splitmix64(int(seed))
    return np.uint32(m & MASK32), np.uint32(m >> 32)


def speckle_bytes(x: torch.Tensor, seeds: list[int], stds: list[float]) -> torch.Tensor:
    """Multiplicative noise on uint8 ``N x C x H x W``: ``round(x (1 + std_j z))`` clipped to 0..255 as
    uint8, z = ``standard_normal``; on the CPU one compiled pass per item (the same bytes)."""
    compiled = _compiled_items(x, (-1,))
    if compiled is not None:
        noise_jit, src, out = compiled
        normal = normal_table("cpu").numpy()
        for j, std in enumerate(stds):
            noise_jit.speckle_bytes(src[j], *_cpu_keys(seeds[j]), normal, np.float32(std), out[j])
        return torch.from_numpy(out).view(x.shape)
    noise = standard_normal(seeds, tuple(x.shape[1:]), x.device)
    std = torch.tensor(stds, dtype=torch.float32, device=x.device)
    out = x.to(torch.float32).mul_(noise.mul_(std.view(-1, 1, 1, 1)).add_(1.0))
    return to_uint8(out.round_().clamp_(0, 255))


def salt_pepper_bytes(x: torch.Tensor, seeds: list[int], amounts: list[float], salt: float) -> torch.Tensor:
    """Salt and pepper on uint8 ``N x C x H x W``: a pixel is hit where the first plane of
    ``uniform(seeds, (2, H, W))`` is below the item's amount, and becomes white in every channel where the
    second is below ``salt``, else black; on the CPU one compiled pass per item (the same bytes)."""
    n, c, h, w = x.shape
    compiled = _compiled_items(x, (c, h * w))
    if compiled is not None:
        noise_jit, src, out = compiled
        for j, amount in enumerate(amounts):
            noise_jit.salt_pepper_bytes(src[j], *_cpu_keys(seeds[j]), np.float32(amount), np.float32(salt), out[j])
        return torch.from_numpy(out).view(x.shape)
    u = uniform(seeds, (2, h, w), x.device)
    hit = u[:, 0] < torch.tensor(amounts, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    white = (u[:, 1] < salt)[:, None].expand(n, c, h, w)
    hit = hit[:, None].expand(n, c, h, w)
    out = x.clone()
    out[hit & white] = 255
    out[hit & ~white] = 0
    return out


def _cdf_table(peak: float) -> tuple[torch.Tensor, int, bool]:
    """(``_poisson_cdf31`` of the 256 rates of ``peak`` as float64 whole numbers, kmax, whether some rates
    are above ``POISSON_EXACT``)."""
    lam = torch.arange(256, dtype=torch.float64, device="cpu") * (peak / 255.0)
    top = min(float(lam[-1]), POISSON_EXACT)
    kmax = int(top + 12 * math.sqrt(top) + 16)
    return _poisson_cdf31(lam.clamp(max=POISSON_EXACT), kmax), kmax, float(lam[-1]) > POISSON_EXACT


def poisson_of_levels(x: torch.Tensor, seeds: list[int], peaks: list[float]) -> torch.Tensor:
    """Shot noise for uint8 ``N x C x H x W``: k ~ Poisson(x / 255 * peak_j) for item j, returned as float32
    counts. Each item's 256 possible rates get an exact inverse-CDF table (31-bit integer CDF, searched
    with 31-bit integer uniforms, so every device finds the same k); rates above ``POISSON_EXACT`` use
    round(lam + sqrt(lam) z)."""
    n = x.shape[0]
    device = x.device
    per = x[0].numel()
    u = (bits32(seeds, per, device).to(torch.int64) >> 1) & 0x7FFFFFFF  # N x per, 31-bit
    levels = x.reshape(n, per).to(torch.int64)
    out = torch.empty((n, per), dtype=torch.float32, device=device)
    for j, peak in enumerate(peaks):
        cdf, kmax, big = _cdf_table(float(peak))  # 256 x (kmax + 1)
        keys = (torch.arange(256, dtype=torch.int64, device="cpu").view(-1, 1) << 32) | cdf.to(torch.int64)
        keys = keys.reshape(-1).to(device)
        v = levels[j]
        query = (v << 32) | u[j]
        k = torch.searchsorted(keys, query, right=True) - v * (kmax + 1)
        counts = k.clamp_(0, kmax).to(torch.float32)
        if big:
            lam_px = v.to(torch.float32) * (float(peak) / 255.0)
            z = normal_table(device)[(u[j] >> 15) & 0xFFFF]
            approx = (lam_px + lam_px.sqrt() * z).round_().clamp_(min=0)
            counts = torch.where(lam_px > POISSON_EXACT, approx, counts)
        out[j] = counts
    return out.view(x.shape)


def _poisson_cdf31(lam: torch.Tensor, kmax: int) -> torch.Tensor:
    """floor(CDF(k; lam) * 2^31) for k = 0..kmax, per rate, as float64 whole numbers (float64 on the CPU,
    log-space pmf; in place after the first product, the same roundings as out of place, and a quarter of
    the megabyte-sized temporaries)."""
    k = torch.arange(kmax + 1, dtype=torch.float64, device="cpu")
    lam = lam.view(-1, 1)
    t = k * torch.log(lam.clamp(min=1e-300))
    t.sub_(lam).sub_(torch.lgamma(k + 1)).exp_()
    t[lam.view(-1) <= 0] = (k == 0).to(torch.float64)  # a rate of 0: all mass at 0
    t.cumsum_(1).clamp_(max=1.0)
    t[:, -1] = 1.0
    return t.mul_(float(1 << 31)).floor_()


__all__ = ["bits32", "bits16", "uniform", "random_bytes", "normal_table", "standard_normal",
           "scaled_normal_int16", "poisson_of_levels", "poisson_bytes", "speckle_bytes",
           "salt_pepper_bytes", "POISSON_EXACT"]
