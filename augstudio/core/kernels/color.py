"""Colour kernels on uint8 images, on the image's own device (OpenCV on the CPU, see ``kernels.cv``).

Lookup tables, histograms, the grey image, the saturation blend and the hue rotation are exact: the CPU and
torch forms give the same bytes (the grey, the blend and the hue run compiled on the CPU, ``color_jit``;
the grey in the form torch computes on the machine). ``adjust_hue`` follows torchvision v2's uint8
semantics (Pillow's HSV conversion; scale to 0..1, shift the hue, convert back with ``x * 255.999``
truncation), so results equal ``torchvision.transforms.v2.functional.adjust_hue`` byte for byte (a test
compares them); unlike it, every constant is made on the image's device.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from . import cv, jit

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision / ITU-R 601-2
# which of (v, p, q, t) becomes r, g, b for each hue sextant i = 0..5
_SEXTANT = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))
_LEVELS: dict = {}


def levels(device) -> torch.Tensor:
    """``arange(256)`` as float32 on ``device`` (cached; never written to): the input of lookup tables."""
    key = str(device)
    t = _LEVELS.get(key)
    if t is None:
        t = _LEVELS[key] = torch.arange(256, dtype=torch.float32, device=device)
    return t


_LEVELS_NP = np.arange(256, dtype=np.float32)


def affine_table(scale: float, offset: float | None) -> np.ndarray:
    """``affine_lut``'s table for the CPU, as a numpy array: the same float32 products and sums, built with
    numpy (no torch call: with cold caches each costs more than the table's arithmetic), or in one compiled
    call where the loops are loaded."""
    loops = jit.load("color_jit")
    if loops is not None:
        out = np.empty(256, dtype=np.uint8)
        loops.affine_table(np.float32(scale), np.float32(0.0 if offset is None else offset), offset is not None, out)
        return out
    t = _LEVELS_NP * np.float32(scale)
    if offset is not None:
        t += np.float32(offset)
    # clamped to 0..255, the cast truncates, which is the floor (np.clip and np.floor cost 3.5 of 9.6 us)
    np.maximum(t, 0, out=t)
    np.minimum(t, 255, out=t)
    return t.astype(np.uint8)


def affine_lut(scale: float, offset: float | None, device) -> torch.Tensor:
    """``floor(clamp(v * scale + offset, 0, 255))`` for v = 0..255 in float32, as uint8 on ``device``: the
    table of torchvision's brightness (no offset) and contrast steps on uint8. Built with numpy for the CPU
    (``affine_table``), else with torch on the device."""
    if cv.on_cpu(device):
        return torch.from_numpy(affine_table(scale, offset))
    t = levels(device) * scale
    if offset is not None:
        t = t.add_(offset)
    return t.clamp_(0, 255).floor_().to(torch.uint8)


# the levels / 255 in float32 (as torchvision scales them), widened to float64 for the power
_UNIT_LEVELS_F64 = (_LEVELS_NP / np.float32(255.0)).astype(np.float64)


def gamma_powers(gamma: float) -> np.ndarray:
    """``(v / 255) ^ gamma`` for v = 0..255 as float32: the power taken in float64 and rounded once, which
    is the correctly rounded float32 power (a test checks it against the C library's ``pow``). torch's
    float32 ``pow`` is not: its SIMD and scalar kernels round the last bit differently (seen: 2 of 150,000
    gammas give another table on torch's ``default`` kernels than on AVX2 / AVX-512), so a table taken
    from it could change with the machine. This one is the same everywhere."""
    return np.power(_UNIT_LEVELS_F64, gamma).astype(np.float32)


def gamma_table(gamma: float) -> np.ndarray:
    """torchvision's gamma table on uint8, ``255.999 (v / 255) ^ gamma`` clamped and truncated, from
    ``gamma_powers``, as a numpy array. Every device uses it (``gamma_lut``), so the table and the image are
    the same on every machine and device. It equals torchvision's table except where torch's float32
    ``pow`` is off by its last bit at a level boundary (37 of 150,000 gammas here, by one level)."""
    loops = jit.load("color_jit")
    if loops is not None:  # one compiled call instead of five numpy ones: the same table
        out = np.empty(256, dtype=np.uint8)
        loops.gamma_table(_UNIT_LEVELS_F64, float(gamma), out)
        return out
    p = gamma_powers(gamma)
    np.minimum(p, 1, out=p)  # pow of [0, 1] is >= 0
    p *= np.float32(255.999)
    return p.astype(np.uint8)


def gamma_lut(gamma: float, device) -> torch.Tensor:
    """``gamma_table`` as a uint8 tensor on ``device``."""
    t = torch.from_numpy(gamma_table(gamma))
    return t if cv.on_cpu(device) else t.to(device)


def _tensor(lut, device) -> torch.Tensor:
    return torch.from_numpy(lut).to(device) if isinstance(lut, np.ndarray) else lut


def _array(lut) -> np.ndarray:
    """A CPU table (numpy array or CPU tensor) as a numpy array."""
    return lut if isinstance(lut, np.ndarray) else lut.contiguous().numpy()


def compose_luts(first, then):
    """The table of applying ``first``, then ``then`` (numpy arrays for the CPU, or tensors); numpy where
    both are."""
    if isinstance(first, np.ndarray) or first.is_cpu:
        t = _array(then).take(_array(first))
        return t if isinstance(first, np.ndarray) and isinstance(then, np.ndarray) else torch.from_numpy(t)
    return _tensor(then, first.device).index_select(0, first.to(torch.int32))


def apply_lut(x: torch.Tensor, lut) -> torch.Tensor:
    """``lut[x]`` for a uint8 tensor (any shape) and a 256-entry uint8 table: a tensor on ``x``'s device,
    or a numpy array (the CPU builders' tables, which the CPU form uses without a torch call)."""
    if cv.active(x) and x.numel():
        out, dst = cv.new_planes(x.shape)
        cv.lut_bytes(x.contiguous().numpy(), _array(lut), dst)
        return out
    lut = _tensor(lut, x.device)
    return lut.index_select(0, x.reshape(-1).to(torch.int32)).reshape(x.shape)


def apply_luts(x: torch.Tensor, luts: list) -> torch.Tensor:
    """Channel ``i`` of uint8 ``... x C x H x W`` through its own 256-entry table ``luts[i]`` (None: as it is;
    tables as ``apply_lut`` takes them)."""
    c = x.shape[-3]
    if cv.active(x):
        src = x.contiguous().numpy().reshape(-1, c, *x.shape[-2:])
        out, dst = cv.new_planes(x.shape)
        dst = dst.reshape(src.shape)
        for j in range(src.shape[0]):
            for i, lut in enumerate(luts):
                if lut is None:
                    dst[j, i] = src[j, i]
                else:
                    cv.lut_bytes(src[j, i], _array(lut), dst[j, i])
        return out
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for i, lut in enumerate(luts):
        out[..., i, :, :] = x[..., i, :, :] if lut is None else apply_lut(x[..., i, :, :], lut)
    return out


def bitwise(x: torch.Tensor, op: str, mask: int = 0, threshold: float = 0.0) -> torch.Tensor:
    """Exact single-pass forms of three tables on uint8: ``not`` (255 - x; torch's on every device), ``and``
    (x & mask: posterize; numpy on the CPU), ``solarize`` (255 - x where x >= threshold; a compiled loop on
    the CPU, a byte table where numba is missing); torch elsewhere."""
    if op == "not":  # torch's own: 29 us between other libraries' calls at 512 x 512 x 3, numpy's route 35
        return torch.bitwise_not(x)
    if op == "solarize" and cv.active(x) and x.numel():
        level = math.ceil(threshold)  # uint8 x >= threshold exactly where x >= its ceiling
        if level <= 0:
            return torch.bitwise_not(x)
        if level > 255:
            return x.clone()
        loops = jit.load("color_jit")
        if loops is not None:  # one compare-and-xor pass (a byte table cost 5x as much on an AVX2 machine)
            src = x.contiguous().numpy()
            dst = np.empty(src.shape, np.uint8)
            loops.solarize(src.reshape(-1), np.uint8(level), dst.reshape(-1))
            return torch.from_numpy(dst)
    if cv.active(x) and x.numel():
        src = x.contiguous().numpy()
        # numpy allocates the result itself (its memory reused from call to call, and one call fewer than
        # an empty array to write into: 27 against 31 us between other libraries' calls at 512 x 512 x 3)
        if op == "and":  # numpy's SIMD and: 18 vs 33 us for cv2.bitwise_and with a scalar at 512 x 512 x 3
            return torch.from_numpy(np.bitwise_and(src, np.uint8(mask)))
        out, dst = cv.new_planes(x.shape)
        cv.lut_bytes(src, _solarize_table(threshold), dst)  # 22 us at 512 x 512 x 3; threshold + xor: 55 us
        return out
    if op == "and":
        return x & int(mask)
    return torch.where(x >= threshold, 255 - x, x)


_LEVELS_I32 = np.arange(256, dtype=np.int32)


def _solarize_table(threshold: float) -> np.ndarray:
    return np.where(_LEVELS_I32 >= threshold, 255 - _LEVELS_I32, _LEVELS_I32).astype(np.uint8)


def histograms(x: torch.Tensor) -> torch.Tensor:
    """Integer histograms (int64, ``C x 256``) of the channels of uint8 ``C x H x W``."""
    c = x.shape[-3]
    if cv.active(x):
        cv.sync_threads()
        src = cv.planes(x)
        rows = []
        for i in range(c):
            plane = src[i].reshape(-1)
            # float32 counts are exact below 2^24: count large planes in slices
            parts = [cv2.calcHist([plane[k:k + (1 << 23)]], [0], None, [256], [0, 256])
                     for k in range(0, max(plane.size, 1), 1 << 23)]
            rows.append(torch.from_numpy(sum(p.astype("int64") for p in parts).reshape(256)))
        return torch.stack(rows)
    flat = x.reshape(c, -1).to(torch.int64)
    flat = flat + torch.arange(c, dtype=torch.int64, device=x.device).view(c, 1) * 256
    return torch.bincount(flat.reshape(-1), minlength=256 * c).view(c, 256)


def gray(x: torch.Tensor, floor: bool = True) -> torch.Tensor:
    """torchvision's grey of uint8 (or whole-number float) RGB ``... x 3 x H x W``, floored, as float32
    ``... x 1 x H x W``: one pass per channel, converting as it multiplies (the same float32 products and
    fused sums as converting first). ``floor=False``: not yet floored, for a truncating cast to uint8 (the
    sums are >= 0, so truncation is the floor) that saves the pass."""
    r, g, b = x.unbind(-3)
    w0, w1, w2 = GRAY_WEIGHTS
    s = torch.mul(r, w0).add_(g, alpha=w1).add_(b, alpha=w2)
    return (s.floor_() if floor else s).unsqueeze_(-3)


_COMPILED: dict = {}


def _compiled():
    """``color_jit`` and the form of the grey torch computes on this machine (fused multiply-adds or not),
    asked of torch once on the colours where the two differ; the form is None if torch gives neither, and
    both are None where numba is missing (the torch form then runs on the CPU too)."""
    try:
        return _COMPILED["jit"]
    except KeyError:
        pass
    color_jit = jit.load("color_jit")
    if color_jit is None:  # not kept: the loops may still be loading in the background
        return None, None
    c = np.repeat(np.array(color_jit.FMA_COLOURS, dtype=np.uint32), 64)  # whole vectors of torch's kernel
    rgb = np.stack([c >> 16, (c >> 8) & 255, c & 255]).astype(np.uint8).reshape(3, 1, -1)
    want = gray(torch.from_numpy(rgb), floor=False).numpy().astype(np.uint8).reshape(1, -1)
    form = None
    for fused in (True, False):
        got = np.empty_like(want)
        color_jit.gray(rgb, fused, got)
        if np.array_equal(got, want):
            form = fused
            break
    _COMPILED["jit"] = (color_jit, form)
    return _COMPILED["jit"]


def torch_fuses():
    """Does torch's add with alpha (``a.add_(b, alpha=w)``) round ``a + w b`` once on this machine (its AVX2 /
    AVX-512 kernels) or twice (``default``)? None where it is unknown or numba is missing: the compiled
    loops that copy torch's float roundings then stand aside."""
    return _compiled()[1]


def _compiled_form(x: torch.Tensor):
    """(color_jit, form) where the compiled loops handle CPU uint8 RGB ``3 x H x W`` ``x``, else None."""
    if not (cv.active(x) and x.dim() == 3 and x.shape[0] == 3):
        return None
    loops, form = _compiled()
    return None if form is None else (loops, form)


def grayscale(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``gray(x)`` of uint8 RGB ``3 x H x W`` as uint8, repeated into ``channels`` planes."""
    compiled = _compiled_form(x)
    if compiled is not None:
        loops, fused = compiled
        out, dst = cv.new_planes((channels, *x.shape[-2:]))
        loops.gray(cv.planes(x), fused, dst[0])
        dst[1:] = dst[0]
        return out
    g = gray(x).to(torch.int16).to(torch.uint8)  # whole numbers 0..255: warp.to_uint8's cast
    return g.expand((*x.shape[:-3], channels, *x.shape[-2:])).contiguous() if channels > 1 else g


def gray_mean(x: torch.Tensor) -> float:
    """The mean of ``gray(x)`` (RGB) or of ``x`` (one channel) of uint8 ``C x H x W``: an exact sum of whole
    numbers (the same for any thread count) over the pixel count."""
    compiled = _compiled_form(x)
    if compiled is not None:  # the same whole numbers, summed exactly in one pass
        loops, fused = compiled
        return float(loops.gray_sum(cv.planes(x), fused)) / float(x[0].numel())
    g = gray(x) if x.shape[-3] == 3 else x
    return float(g.sum(dtype=torch.float64).item()) / float(g.numel())


def saturate(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend uint8 RGB ``3 x H x W`` with its grey: ``floor(clamp(f x + (1 - f) grey))`` in float32 (the
    blend of torchvision's adjust_saturation, each product rounded, then their sum). On the CPU one compiled
    pass gives the torch form's bytes."""
    compiled = _compiled_form(x)
    if compiled is not None:
        loops, fused = compiled
        out, dst = cv.new_planes(x.shape)
        loops.saturate(cv.planes(x), factor, fused, dst)
        return out
    g = gray(x).mul_(1.0 - factor)
    return torch.mul(x, factor).add_(g).clamp_(0, 255).floor_().to(torch.int16).to(torch.uint8)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` float RGB in 0..1 -> HSV (h in [0, 1))."""
    r, g, _ = x.unbind(dim=-3)
    minc, maxc = torch.aminmax(x, dim=-3)
    eqc = maxc == minc  # grey: s and h are 0 (no division by zero below)
    span = maxc - minc
    ones = torch.ones_like(maxc)
    s = span / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, span).unsqueeze_(dim=-3)
    rc, gc, bc = ((maxc.unsqueeze(dim=-3) - x) / divisor).unbind(dim=-3)
    max_not_r = maxc != r
    max_is_g = maxc == g
    hg = rc.add(2.0).sub_(bc).mul_(max_is_g & max_not_r)
    hr = bc.sub_(gc).mul_(~max_not_r)
    hb = gc.add_(4.0).sub_(rc).mul_(max_not_r.logical_and_(max_is_g.logical_not_()))
    h = hr.add_(hg).add_(hb).mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=-3)
    h6 = h.mul(6)
    i = torch.floor(h6)
    f = h6.sub_(i)
    i = i.to(dtype=torch.int32)
    sxf = s * f
    one_minus_s = 1.0 - s
    q = (1.0 - sxf).mul_(v).clamp_(0.0, 1.0)
    t = sxf.add_(one_minus_s).mul_(v).clamp_(0.0, 1.0)
    p = one_minus_s.mul_(v).clamp_(0.0, 1.0)
    i.remainder_(6)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    select = torch.tensor(_SEXTANT, dtype=torch.long, device=x.device)[:, i]
    if select.ndim > 3:  # (3, B..., H, W) -> (B..., 3, H, W)
        select = select.moveaxis(0, -3)
    return vpqt.gather(-3, select)


def adjust_hue(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the hue of uint8 RGB ``... x 3 x H x W`` by ``factor`` turns (-0.5 .. 0.5); grey images as
    they are."""
    if x.shape[-3] != 3 or x.numel() == 0:
        return x
    loops = _compiled()[0] if cv.active(x) and x.dim() == 3 and -0.5 <= factor <= 0.5 else None
    if loops is not None:  # one compiled pass, the same bytes
        out, dst = cv.new_planes(x.shape)
        loops.shift_hue(cv.planes(x), factor, dst)
        return out
    hsv = rgb_to_hsv(x.to(torch.float32).mul_(1.0 / 255))
    h, s, v = hsv.unbind(dim=-3)
    h.add_(factor).remainder_(1.0)
    out = hsv_to_rgb(torch.stack((h, s, v), dim=-3))
    return out.mul_(255.0 + 1.0 - 1e-3).to(torch.uint8)


__all__ = ["GRAY_WEIGHTS", "bitwise", "gray", "grayscale", "gray_mean", "saturate", "affine_lut", "affine_table", "gamma_lut", "gamma_table", "gamma_powers", "compose_luts", "levels", "apply_lut", "apply_luts", "histograms", "rgb_to_hsv", "hsv_to_rgb", "adjust_hue"]
