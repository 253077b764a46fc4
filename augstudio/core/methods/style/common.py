"""Conversions shared by the style methods, and the result they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from augstudio.core.base.errors import ImageError
from augstudio.core.io.images import Picture, as_picture, read_image


@dataclass
class StyleResult:
    image: torch.Tensor  # uint8 3 x H x W (cpu)
    # texture / transfer: losses[0] is the starting loss, then one per iteration (all pyramid levels);
    # training jobs: one per iteration
    losses: list = field(default_factory=list)
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def picture(self) -> Picture:
        return Picture(self.image, "rgb")


def to_float(image, device=None, max_size: int | None = None) -> torch.Tensor:
    """A path, Picture, PIL image or uint8 tensor -> ``1 x 3 x H x W`` float in 0..1.

    Gray is repeated to three channels, alpha is dropped; categorical pictures are refused (their values
    are labels). ``max_size`` scales the longer side down to at most that many pixels."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    if isinstance(image, torch.Tensor) and image.dtype != torch.uint8:
        x = image.float()
        if x.dim() == 3:
            x = x.unsqueeze(0)
    else:
        pic, _ = as_picture(image)
        if pic.kind == "categorical":
            raise ImageError(pic.meta.get("path"), "style methods need colour or gray images; a categorical "
                             "(palette) image holds labels, not intensities")
        x = pic.pixels.float().div(255.0).unsqueeze(0)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] == 4:
        x = x[:, :3]
    if max_size is not None and max(x.shape[-2:]) > max_size:
        s = max_size / max(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    if device is not None:
        x = x.to(device)
    return x.contiguous()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``1 x 3 x H x W`` (or ``3 x H x W``) float 0..1 -> uint8 ``3 x H x W`` on the cpu (a copy)."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().clone()


def resize(x: torch.Tensor, size) -> torch.Tensor:
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    smaller = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=smaller)


def stylize_pixels(x: torch.Tensor, kind: str, max_size: int | None, device, fn) -> torch.Tensor:
    """Run ``fn`` (``1 x 3 x h x w`` float 0..1 on ``device`` -> the same) on uint8 ``C x H x W`` pixels the
    way the ``stylize`` recipe op does: gray as three channels and back to luma, alpha kept aside, at most
    ``max_size`` pixels on the longer side while stylising, then resized back to the input's size."""
    alpha_ch = None
    if kind == "rgba":
        x, alpha_ch = x[:3], x[3:]
    gray = x.shape[0] == 1
    xf = x.float().div(255).unsqueeze(0)
    if gray:
        xf = xf.repeat(1, 3, 1, 1)
    h, w = xf.shape[-2:]
    small = xf
    if max_size is not None and max(h, w) > max_size:
        s = max_size / max(h, w)
        small = resize(xf, (max(1, round(h * s)), max(1, round(w * s))))
    small = small.to(device)
    y = fn(small)
    y = resize(y.float().to(x.device), (h, w)).clamp(0, 1)
    if gray:
        y = (y * torch.tensor([0.299, 0.587, 0.114], device=y.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    out = to_uint8(y) if not gray else y[0].mul(255).round().clamp(0, 255).to(torch.uint8)
    return out if alpha_ch is None else torch.cat([out, alpha_ch], 0)
