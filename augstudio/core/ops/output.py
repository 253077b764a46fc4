"""Output steps: how training code takes the augmented image, at the end of a recipe.

``to_tensor`` makes the uint8 pixels a float tensor in 0..1 (torchvision's ``ToTensor``), ``normalize``
then subtracts a mean and divides by a std per channel. They come last (after them the image is no longer
uint8 pixels), run once per image with no randomness, and only where a tensor is the result: in
``Recipe.apply`` / ``sample_transform`` / ``dataset`` / ``apply_batch``. The app's preview and ``augstudio
export`` show and write the pixels before them."""

from __future__ import annotations

import torch

from augstudio.core.base.errors import ParamError

from .base import Op
from .params import Param
from .registry import register


class OutputOp(Op):
    family = "output"
    categorical = "custom"  # category indices become numbers like any pixel

    def convert(self, x: torch.Tensor) -> torch.Tensor:
        """``N x C x H x W`` (uint8, or float from an earlier output step) -> float32."""
        raise NotImplementedError

    def apply(self, x, params, kind):
        return self.convert(x[None])[0]


@register
class ToTensor(OutputOp):
    name = "to_tensor"
    summary = "Make the pixels a float32 tensor in 0..1 (torchvision ToTensor); comes last, before normalize."

    def convert(self, x):
        return x.to(torch.float32).div_(255.0) if not x.is_floating_point() else x


@register
class Normalize(OutputOp):
    name = "normalize"
    summary = "Standardise each channel of the 0..1 tensor: (x - mean) / std (torchvision Normalize); comes last."
    params = (
        Param("mean", "numbers", None, low=-1e6, high=1e6, help="per-channel means, e.g. [0.485, 0.456, 0.406]"),
        Param("std", "numbers", None, low=1e-12, high=1e6,
              help="per-channel standard deviations (> 0), e.g. [0.229, 0.224, 0.225]"),
    )

    def convert(self, x):
        x = x.to(torch.float32).div_(255.0) if not x.is_floating_point() else x
        c = x.shape[1]
        mean, std = self.values["mean"], self.values["std"]
        if len(mean) not in (1, c) or len(std) not in (1, c):
            raise ParamError(f"op 'normalize': {len(mean)} means and {len(std)} stds for a {c}-channel image")
        m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x - m) / s


__all__ = ["OutputOp", "ToTensor", "Normalize"]
