"""A classifier ready to use, whatever file or name it came from (``loading``, ``exported``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_MODES = ("rgb", "gray", "onehot")


@dataclass
class LoadedModel:
    """A classifier ready to use: ``module`` is in eval mode on ``device``."""

    module: torch.nn.Module
    input_size: tuple[int, int] | None  # (height, width); None = any size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None
    name: str
    input_mode: str = "rgb"
    num_categories: int = 0  # for input_mode "onehot"
    source: str = ""  # "torchvision" | "checkpoint" | "torchscript"
    meta: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        for b in self.module.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.classes else None

    @property
    def in_channels(self) -> int:
        return {"rgb": 3, "gray": 1}.get(self.input_mode, self.num_categories)
