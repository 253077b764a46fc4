"""Targets in an export (``augstudio export --targets``): the source's masks, boxes and keypoints, moved by the
steps each output's manifest record says were applied, written in the source's own format (COCO JSON, YOLO
txt, Pascal VOC XML, a mask folder) beside the exported images.

The targets are replayed from the final manifest in the main process, after every image is written: the
records are the same whatever the worker count, engine or resume history, so the annotation files are
byte-identical across ``-j`` and resumes, and the workers never carry masks. What an output lost (a box
under ``min_visibility``, a keypoint that left the image) is added to the record of the step that lost it
(``targets_lost``), so the manifest says what was dropped and why.
"""

from __future__ import annotations

import json

from augstudio.core.base.errors import AugstudioError, DatasetError, RecipeError
from augstudio.core.engine.recipe import Recipe, note_lost
from augstudio.core.io.dataset import Dataset, Item
from augstudio.core.io.targets import TargetDataset, TargetWriter, read_targets


def read_export_targets(src, recipe: Recipe, shards: bool) -> tuple[TargetDataset, Dataset]:
    """The source's targets and the image list the export runs over (the annotated images, keyed by their
    path as in the annotations: the same key ``recipe.dataset(src, targets=True)`` uses). Refuses what an
    export cannot give targets for, before anything is written."""
    if recipe.batch:
        raise RecipeError("--targets: the recipe has a batch stage, which mixes two images into one output; "
                          "their masks and boxes cannot be mixed. Export targets with the per-image steps only "
                          "(remove batch:), or export the mixed images without --targets")
    if shards:
        raise RecipeError("--targets writes the source's annotation files beside the exported images; with "
                          "--format webdataset this is not supported yet (use a folder format)")
    recipe.pipeline().check_targets()  # a step that cannot carry targets (AugMix) is named now
    tds = read_targets(src)
    items = [Item(it.image, -1, None) for it in tds.items]
    return tds, Dataset(root=tds.root, classes=[], items=items, layout="targets")


def write_export_targets(out_r, tds: TargetDataset, recipe: Recipe, manifest: str) -> tuple[str, list, list]:
    """Write the targets of every output in ``manifest`` (its lines, in order); returns the manifest with
    ``targets_lost`` in the records of the steps that lost something, the errors (an output whose targets
    could not be moved is left out of the annotations, and named), and the files written."""
    pipe = recipe.pipeline()
    by_image = {it.image: it for it in tds.items}
    writer = TargetWriter(tds, out_r)
    lines, errors = [], []
    decoded: tuple = (None, None)  # (image, targets): an image's copies follow each other in the manifest
    for line in manifest.splitlines():
        rec = json.loads(line)
        for step in rec["steps"]:  # a finished export run again: its manifest has them from the last run
            step.pop("targets_lost", None)
        item = by_image.get(rec["source"])
        log: list = []
        try:
            if item is None:
                raise DatasetError("no annotations for this image")
            size = tuple(rec["source_size"])
            if tuple(item.size) != size:
                raise DatasetError(f"the image is {size[0]} x {size[1]} (h x w) but its annotations say "
                                   f"{item.size[0]} x {item.size[1]}; fix the annotation file or the image")
            if decoded[0] != item.image:  # decode (RLE, polygons) once per image, not once per copy
                decoded = (item.image, item.targets)
            moved = pipe.replay_targets(decoded[1], rec["steps"], rec["kind"], size, recipe.targets, log=log)
            extras = dict(item.extras)
            if "box_index" in moved:
                extras["box_index"] = moved["box_index"].tolist()
            writer.add(rec["output"], rec["size"], moved, extras)
        except AugstudioError as e:
            errors.append({"source": rec["source"], "error": f"targets of {rec['output']} not written: {e}"})
        note_lost(rec["steps"], log)
        lines.append(json.dumps(rec, separators=(",", ":"), sort_keys=True))  # as export.py writes lines
    files = writer.close()
    return ("\n".join(lines) + "\n" if lines else ""), errors, files


__all__ = ["read_export_targets", "write_export_targets"]
