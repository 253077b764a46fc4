"""Networks augstudio defines itself (saved and loaded by ``models.loading``; trained by workflows)."""

from __future__ import annotations

import difflib
import math

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



# -- the models `augstudio evaluate` trains from scratch ------------------------------------------------
def small_cnn(in_channels: int, num_classes: int):
    """A small CNN (3 conv blocks with group norm: no running statistics to lag behind in short runs; global average pooling, a linear head); any input size."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, 16), nn.MaxPool2d(2),
        *block(16, 32), nn.MaxPool2d(2),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers (they travel with the model)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32, device="cpu").view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32, device="cpu").view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_model(name: str, in_channels: int, num_classes: int, mean=None, std=None):
    """``probe`` (``small_cnn``) or a torchvision architecture name (random init, 3 channels). With ``mean``
    and ``std`` (per channel, of the training images in 0..1) the model standardises its own input, so batch
    ops and saliency still see images in 0..1."""
    # built on the meta device (no global-RNG draws, no memory), then given CPU storage and seeded weights
    with torch.device("meta"):
        if name == "probe":
            net = small_cnn(in_channels, num_classes)
        else:
            check_model_name(name)
            import torchvision  # deferred: torchvision

            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    net = net.to_empty(device="cpu")
    init_weights(net, seeding.generator(0, "build-model", 0, name))
    return net if mean is None else nn.Sequential(Standardize(mean, std), net)


def check_model_name(name: str) -> None:
    if name == "probe":
        return
    import torchvision  # deferred: torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"--model {name!r}: not 'probe' nor a torchvision classification architecture.{hint}")


def init_weights(model, gen) -> None:
    """Re-draw every weight from ``gen`` (PyTorch's default schemes), so initialisation is seeded without
    touching the global RNG: conv / linear weights kaiming-uniform(a=sqrt(5)), biases uniform(+-1/sqrt(fan_in)),
    normalisation layers weight 1 and bias 0; any other parameter (class tokens, position embeddings ...)
    normal(0, 0.02)."""
    seen: set[int] = set()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d,
                              nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                seen.update(id(p) for p in m.parameters(recurse=False))
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)):
                w = m.weight
                cpu = torch.empty(w.shape, device="cpu")
                nn.init.kaiming_uniform_(cpu, a=math.sqrt(5), generator=gen)
                w.copy_(cpu)
                if m.bias is not None:
                    fan_in = w[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                    m.bias.copy_(torch.empty(m.bias.shape, device="cpu").uniform_(-bound, bound, generator=gen))
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
        for p in model.parameters():
            if id(p) not in seen:
                p.copy_(torch.empty(p.shape, device="cpu").normal_(0.0, 0.02, generator=gen))


__all__ = ["ProbeNet", "small_cnn", "Standardize", "build_model", "check_model_name", "init_weights"]
