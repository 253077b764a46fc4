"""Batch ops on labels only."""

from __future__ import annotations

from .base import BatchOp
from .params import Param
from .registry import register_batch


def smooth_labels(labels, eps: float):
    """Label smoothing (Szegedy et al. 2016): (1 - eps) * y + eps / K."""
    k = labels.shape[-1]
    return (1.0 - eps) * labels + eps / k


@register_batch
class LabelSmoothing(BatchOp):
    name = "label_smoothing"
    summary = "Label smoothing: y -> (1 - eps) * y + eps / K (K classes); images unchanged."
    targets = "keep"  # the images, and so their masks, boxes and keypoints, are unchanged
    params = (Param("eps", "float", 0.1, low=0.0, high=1.0, typical=(0.0, 0.3), help="share of the label spread over all classes"),)

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        return {"eps": self.eps}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        return images, smooth_labels(soft_labels, float(params.get("eps", self.eps)))
