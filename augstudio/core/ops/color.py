"""Colour ops. Refused on categorical pictures: their values are labels, not intensities."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from .. import seeding
from .base import Op, Param, register


def split_alpha(x, kind):
    """Colour ops act on colour channels only; alpha is carried through untouched."""
    if kind == "rgba":
        return x[..., :3, :, :], x[..., 3:, :, :]
    return x, None


def join_alpha(x, alpha):
    return x if alpha is None else torch.cat([x, alpha], dim=-3)


@register
class ColorJitter(Op):
    name = "color_jitter"
    family = "color"
    summary = "Random brightness, contrast, saturation and hue, applied in a random order (torchvision semantics)."
    params = (
        Param("brightness", "float", 0.0, low=0.0, high=10.0, help="factor drawn from [max(0, 1-b), 1+b]"),
        Param("contrast", "float", 0.0, low=0.0, high=10.0, help="factor drawn from [max(0, 1-c), 1+c]"),
        Param("saturation", "float", 0.0, low=0.0, high=10.0, help="factor drawn from [max(0, 1-s), 1+s]"),
        Param("hue", "float", 0.0, low=0.0, high=0.5, help="hue shift drawn from [-h, h] (fraction of a turn)"),
    )

    def sample(self, gen, size):
        order = torch.randperm(4, generator=gen).tolist()
        out = {"order": order}
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            out[name] = round(seeding.uniform(gen, max(0.0, 1 - v), 1 + v), 6) if v > 0 else None
        out["hue"] = round(seeding.uniform(gen, -self.hue, self.hue), 6) if self.hue > 0 else None
        return out

    def apply(self, x, params, kind):
        x, alpha = split_alpha(x, kind)
        for i in params["order"]:
            if i == 0 and params["brightness"] is not None:
                x = F.adjust_brightness(x, params["brightness"])
            elif i == 1 and params["contrast"] is not None:
                x = F.adjust_contrast(x, params["contrast"])
            elif i == 2 and params["saturation"] is not None and x.shape[-3] == 3:
                x = F.adjust_saturation(x, params["saturation"])
            elif i == 3 and params["hue"] is not None and x.shape[-3] == 3:
                x = F.adjust_hue(x, params["hue"])
        return join_alpha(x, alpha)
