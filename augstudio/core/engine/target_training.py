"""Training with targets: a dataset whose item i is the recipe applied to image i *and* its masks, boxes and
keypoints, keyed as export keys it (relative path, copy), so a DataLoader gives export's pixels and targets.

Targets come out as ``torchvision.tv_tensors`` under the names torchvision's detection and segmentation
models read: ``boxes`` (``BoundingBoxes``, XYXY, with the canvas size), ``labels``, ``masks`` (``Mask``: the
class mask ``H x W`` or instance masks ``M x H x W``), ``keypoints`` (``KeyPoints``, where the installed
torchvision has it) with ``keypoint_labels`` / ``keypoint_visible``, and ``box_index``. ``output="plain"``
gives the canonical dict of ``augstudio.core.base.targets`` instead.
"""

from __future__ import annotations

from pathlib import Path

from augstudio.core.base.errors import DatasetError, RecipeError
from augstudio.core.io.images import read_image
from augstudio.core.io.targets import TargetDataset, read_targets

from .training import EpochKeyedDataset, _recipe, finished

OUTPUTS = ("tv_tensors", "plain")


class TargetRecipeDataset(EpochKeyedDataset):
    """``source``: a ``TargetDataset`` (``augstudio.core.io.targets.read_targets``) or a folder / COCO JSON in
    any format it reads. ``copy=k`` gives export's copy k; without it the copy is the epoch (``set_epoch``).
    Items are ``(image, targets)``; batch them with ``collate_fn=TargetRecipeDataset.collate`` (lists: each
    image has its own number of boxes), as torchvision's detection references do."""

    def __init__(self, recipe, source, copy: int | None = None, epoch: int = 0, output: str = "tv_tensors"):
        if output not in OUTPUTS:
            raise RecipeError(f"dataset with targets: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.recipe = _recipe(recipe, "dataset")
        self.data = source if isinstance(source, TargetDataset) else read_targets(Path(source))
        self.classes = list(self.data.classes)
        self.copy = None if copy is None else int(copy)
        self.epoch = int(epoch)
        self.output = output
        self._pipeline = None
        self.pipeline().check_targets()

    def __len__(self) -> int:
        return len(self.data.items)

    def key(self, i: int) -> str:
        return self.data.items[i].image

    def __getitem__(self, i: int):
        pipe = self.pipeline()
        item = self.data.items[i]
        path = self.data.abspath(item)
        pic = read_image(path)
        if tuple(pic.size) != tuple(item.size):
            raise DatasetError(f"{path}: the image is {pic.size[0]} x {pic.size[1]} (h x w) but its annotations "
                               f"say {item.size[0]} x {item.size[1]}; fix the annotation file or the image")
        copy = self.epoch if self.copy is None else self.copy
        out, records = pipe.run(pic, self.recipe.seed, item.image, copy)
        targets = pipe.replay_targets(item.targets, records, pic.kind, pic.size, self.recipe.targets)
        image = finished(pipe, out, "tensor")
        if self.output == "plain":
            return image, targets
        return image, as_tv_tensors(targets, tuple(out.size))

    @staticmethod
    def collate(batch):
        """``(images, targets)`` as two tuples: the detection models' input."""
        return tuple(zip(*batch))


def as_tv_tensors(t: dict, size: tuple[int, int]) -> dict:
    """Canonical targets under torchvision's names, wrapped as ``tv_tensors`` (so torchvision's own v2
    transforms and its detection / segmentation models take them as they are)."""
    from torchvision import tv_tensors  # deferred: torchvision (training code only)

    out: dict = {}
    if "boxes" in t:
        out["boxes"] = tv_tensors.BoundingBoxes(t["boxes"], format="XYXY", canvas_size=size)
        out["labels"] = t["box_labels"]
        out["box_index"] = t["box_index"]
    if "mask" in t:
        out["masks"] = tv_tensors.Mask(t["mask"])
    if "keypoints" in t:
        kp = getattr(tv_tensors, "KeyPoints", None)
        out["keypoints"] = kp(t["keypoints"], canvas_size=size) if kp is not None else t["keypoints"]
        out["keypoint_labels"] = t["keypoint_labels"]
        out["keypoint_visible"] = t["keypoint_visible"]
    return out


__all__ = ["TargetRecipeDataset", "as_tv_tensors"]
