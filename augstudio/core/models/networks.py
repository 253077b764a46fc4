"""Networks augstudio defines itself (saved and loaded by ``models.loading``; trained by workflows)."""

from __future__ import annotations

import torch
from torch import nn

from augstudio.core.base import seeding
from augstudio.core.base.errors import ModelError


class ProbeNet(nn.Module):
    """Small globally pooled CNN: ``depth`` stages of two 3x3 conv-BN-ReLU and a 2x2 max-pool."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 3, seed: int = 0,
                 pool: str = "max", stem_stride: int = 1):
        super().__init__()
        if not num_classes or num_classes < 1:
            raise ModelError(f"ProbeNet needs at least one class, got num_classes={num_classes!r}")
        with torch.device("meta"):  # no global-RNG draws at construction; real init below
            layers: list[nn.Module] = []
            c = in_channels
            if stem_stride > 1:
                layers += [nn.Conv2d(c, width, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                c = width
            for i in range(depth):
                w = width * (2 ** i)
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                           nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                if i < depth - 1:
                    layers.append(nn.MaxPool2d(2))
                c = w
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(c, num_classes)
        if pool not in ("avg", "max"):
            raise ModelError(f"ProbeNet: pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.to_empty(device="cpu")
        self.init_weights(seeding.generator(seed, "probe-init"))

    def init_weights(self, gen: torch.Generator) -> None:
        """Kaiming-normal convs, zero-mean small linear head, unit BN; every draw from ``gen``."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                    m.reset_running_stats()
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01, generator=gen)
                    m.bias.zero_()

    def forward(self, x):
        x = self.features(x)
        x = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        return self.head(x)


__all__ = ["ProbeNet"]
