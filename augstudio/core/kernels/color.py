"""Colour kernels on uint8 images, on the image's own device.

``adjust_hue`` follows torchvision v2's uint8 semantics (Pillow's HSV conversion; scale to 0..1, shift the
hue, convert back with ``x * 255.999`` truncation), so results equal ``torchvision.transforms.v2.functional.
adjust_hue`` byte for byte (a test compares them); unlike it, every constant is made on the image's device.
"""

from __future__ import annotations

import torch

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


def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """``lut[x]`` for a uint8 tensor and a 256-entry uint8 table on the same device (any shape)."""
    return lut.index_select(0, x.reshape(-1).to(torch.int32)).reshape(x.shape)


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
    hsv = rgb_to_hsv(x.to(torch.float32).mul_(1.0 / 255))
    h, s, v = hsv.unbind(dim=-3)
    h.add_(factor).remainder_(1.0)
    out = hsv_to_rgb(torch.stack((h, s, v), dim=-3))
    return out.mul_(255.0 + 1.0 - 1e-3).to(torch.uint8)


__all__ = ["levels", "apply_lut", "rgb_to_hsv", "hsv_to_rgb", "adjust_hue"]
