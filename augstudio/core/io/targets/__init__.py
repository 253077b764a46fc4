"""Datasets with targets (masks, boxes, keypoints) in the formats people have: COCO JSON, YOLO txt, Pascal
VOC XML and mask folders. ``read_targets(root)`` gives a ``TargetDataset`` whose items carry targets in the
canonical form of ``augstudio.core.base.targets``; ``write_targets(dataset, out_root, entries)`` writes
them back in the same format. See each format's module for its conventions."""

from .api import FORMATS, TargetWriter, detect_format, read_targets, write_targets
from .model import Problem, TargetDataset, TargetItem

__all__ = ["FORMATS", "TargetDataset", "TargetItem", "Problem", "TargetWriter", "detect_format", "read_targets",
           "write_targets"]
