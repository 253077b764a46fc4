"""Targets that travel with an image: masks, boxes and keypoints (the contract between the dataset formats,
the ops and training code).

A targets dict holds any of:

* ``mask``: ``H x W`` categorical (int64; class per pixel), or ``M x H x W`` for several masks (instance
  masks, one per box);
* ``boxes``: ``N x 4`` float32, ``[x1, y1, x2, y2]`` in pixels of the image (pixel edges: a box around pixel
  column 3 alone is ``x1 = 3, x2 = 4``), with ``box_labels`` (``N`` int64) and ``box_index`` (``N`` int64:
  each box's index in the targets first given, so extras such as COCO ids follow when ops drop boxes; an
  ``M x H x W`` mask with one slice per box loses the slices of dropped boxes with them);
* ``keypoints``: ``K x 2`` float32, ``[x, y]`` in pixels (pixel centres at integers + 0.5, i.e. the same
  continuous frame as the boxes), with ``keypoint_labels`` (``K`` int64) and ``keypoint_visible`` (``K``
  bool: False once a keypoint has left the image; never moved back inside).

``normalize_targets`` checks and converts what a user hands in (PIL masks, lists, numpy) into this form on
the image's device; every op returns targets in the same form. ``ignore_index`` is the mask value erasing
ops write (recipe-level, default 255).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import RecipeError

if TYPE_CHECKING:
    import torch

KINDS = ("mask", "boxes", "box_labels", "box_index", "keypoints", "keypoint_labels", "keypoint_visible")
IGNORE_INDEX = 255


def normalize_targets(targets: dict | None, size: tuple[int, int], device="cpu") -> dict:
    """Check ``targets`` against an image of ``size`` = (height, width) and return them in canonical form."""
    import torch  # deferred: this module's constants are read where torch is not loaded (recipe options)

    if targets is None:
        return {}
    if not isinstance(targets, dict):
        raise RecipeError(f"targets must be a dict with any of {', '.join(KINDS)}, got {type(targets).__name__}")
    unknown = set(targets) - set(KINDS)
    if unknown:
        raise RecipeError(f"unknown target kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    h, w = size
    out: dict = {}
    if targets.get("mask") is not None:
        m = _tensor(targets["mask"], torch.int64, device)
        if m.dim() not in (2, 3) or tuple(m.shape[-2:]) != (h, w):
            raise RecipeError(f"targets['mask'] must be H x W or M x H x W matching the image ({h} x {w}), "
                              f"got shape {tuple(m.shape)}")
        out["mask"] = m
    if targets.get("boxes") is not None:
        b = _tensor(targets["boxes"], torch.float32, device).reshape(-1, 4)
        if bool(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any()):
            raise RecipeError("targets['boxes'] are [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1 (pixels); got "
                              f"{b[((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))][:3].tolist()}")
        out["boxes"] = b
        labels = targets.get("box_labels")
        out["box_labels"] = (_tensor(labels, torch.int64, device).reshape(-1) if labels is not None
                             else torch.zeros(len(b), dtype=torch.int64, device=device))
        if len(out["box_labels"]) != len(b):
            raise RecipeError(f"{len(b)} boxes but {len(out['box_labels'])} box_labels")
        index = targets.get("box_index")
        out["box_index"] = (_tensor(index, torch.int64, device).reshape(-1) if index is not None
                            else torch.arange(len(b), dtype=torch.int64, device=device))
        if len(out["box_index"]) != len(b):
            raise RecipeError(f"{len(b)} boxes but {len(out['box_index'])} box_index entries")
    if targets.get("keypoints") is not None:
        k = _tensor(targets["keypoints"], torch.float32, device).reshape(-1, 2)
        out["keypoints"] = k
        labels = targets.get("keypoint_labels")
        out["keypoint_labels"] = (_tensor(labels, torch.int64, device).reshape(-1) if labels is not None
                                  else torch.arange(len(k), dtype=torch.int64, device=device))
        vis = targets.get("keypoint_visible")
        out["keypoint_visible"] = (_tensor(vis, torch.bool, device).reshape(-1) if vis is not None
                                   else inside(k, size))
        if not len(out["keypoint_labels"]) == len(out["keypoint_visible"]) == len(k):
            raise RecipeError(f"{len(k)} keypoints but {len(out['keypoint_labels'])} keypoint_labels and "
                              f"{len(out['keypoint_visible'])} keypoint_visible")
    return out


def inside(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Which ``K x 2`` points lie in an image of ``size`` (continuous pixel frame [0, w) x [0, h))."""
    h, w = size
    return (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)


def _tensor(value, dtype, device) -> torch.Tensor:
    import torch  # deferred: see normalize_targets

    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    if hasattr(value, "getbands"):  # a PIL image (a mask): its pixel values
        import numpy as np  # deferred: numpy (PIL masks only)

        return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)
    return torch.as_tensor(value, dtype=dtype, device=device)


__all__ = ["KINDS", "IGNORE_INDEX", "normalize_targets", "inside"]
