"""What each op does to masks, boxes and keypoints, declared by what the op is (its base class), or by its own
``targets`` field where the base class does not say it all:

* ``geometric``: moved by the op's matrix, the same one that moves the pixels (masks resampled nearest,
  boxes as the enclosing box of their moved corners, clipped; keypoints exactly, flagged when they leave);
* ``erase``: erased areas of masks become the recipe's ``ignore_index``; boxes fully erased are dropped
  when the recipe asks (``drop_erased_boxes``); keypoints kept;
* ``nested``: each nested step that ran, in order (containers);
* ``policy``: each sub-op the policy drew (its geometric sub-ops move the targets, the others keep them);
* ``keep``: colour, noise, style and output steps leave targets as they are;
* ``refuse``: a clear error when targets are given (AugMix blends differently moved copies; mixing batch
  ops blend two images' objects into one).
"""

from __future__ import annotations

from .base import BatchOp, Declared
from .containers import ContainerOp
from .erase import EraseOp
from .geometry import GeometricOp
from .policy import PolicyOp

EFFECTS = ("geometric", "erase", "nested", "policy", "keep", "refuse")


def target_effect(cls: type[Declared]) -> str:
    if cls.targets is not None:
        return cls.targets
    if issubclass(cls, GeometricOp):
        return "geometric"
    if issubclass(cls, EraseOp):
        return "erase"
    if issubclass(cls, ContainerOp):
        return "nested"
    if issubclass(cls, PolicyOp):
        return "policy"
    if issubclass(cls, BatchOp):
        return "refuse"
    return "keep"


__all__ = ["EFFECTS", "target_effect"]
