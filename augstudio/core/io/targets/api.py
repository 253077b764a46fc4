"""Which format a folder holds, read it, write targets back in a format."""

from __future__ import annotations

from pathlib import Path

from augstudio.core.base.errors import DatasetError

from . import coco, maskfolder, voc, yolo
from .model import Problem, TargetDataset, canonical, check_root, prepare_output

FORMATS = ("coco", "voc", "yolo", "masks")
_WRITERS = {"coco": coco.CocoWriter, "voc": voc.VocWriter, "yolo": yolo.YoloWriter, "masks": maskfolder.MaskWriter}


def detect_format(root) -> str | None:
    """``"coco"``, ``"voc"``, ``"yolo"`` or ``"masks"`` for the layout ``root`` holds (in that order of
    precedence), or None. A ``.json`` file is taken as a COCO annotation file."""
    root = Path(root)
    if root.is_file():
        return "coco" if root.suffix.lower() == ".json" else None
    if not root.is_dir():
        return None
    if coco.find_annotation_files(root):
        return "coco"
    if voc.looks_like(root):
        return "voc"
    if yolo.looks_like(root):
        return "yolo"
    if maskfolder.looks_like(root):
        return "masks"
    return None


def read_targets(root, format: str | None = None, *, check_masks: bool = False, **options) -> TargetDataset:
    """Read a dataset with targets. ``format`` is detected when None. A bad item is reported in
    ``dataset.problems`` and skipped; a dataset that cannot be read at all raises DatasetError.

    Masks are decoded when ``item.targets`` is read; ``check_masks=True`` decodes each once now (and keeps
    it), so a bad mask is reported and skipped here instead. ``options`` go to the format's reader (COCO:
    ``annotation_file``, ``check_images``)."""
    path = Path(root)
    if not path.exists():
        raise DatasetError(f"{path}: folder not found")
    fmt = format or detect_format(path)
    if fmt is None:
        raise DatasetError(f"{path}: no dataset format recognised: expected a COCO JSON (here or in "
                           "annotations/), Pascal VOC (Annotations/*.xml + JPEGImages/), YOLO (images/ + "
                           "labels/*.txt) or a mask folder (images/ + masks/)")
    if fmt not in FORMATS:
        raise DatasetError(f"unknown targets format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "coco":
        ds = coco.read_coco(path, **options)
    else:
        check_root(path)
        ds = {"voc": voc.read_voc, "yolo": yolo.read_yolo, "masks": maskfolder.read_masks}[fmt](path, **options)
    if check_masks:
        kept = []
        for it in ds.items:
            try:
                it.cache()
                kept.append(it)
            except DatasetError as e:
                ds.problems.append(Problem(it.image, f"{e}; skipped"))
        ds.items = kept
    return ds


class TargetWriter:
    """Writes entries one at a time (``add``) and finishes the dataset-level files on ``close``: an export
    can stream. Used as a context manager, ``close`` runs on success only (a failed export leaves no class
    list or COCO JSON claiming it finished)."""

    def __init__(self, dataset: TargetDataset, out_root, format: str | None = None):
        fmt = format or dataset.format
        if fmt not in _WRITERS:
            raise DatasetError(f"unknown targets format {fmt!r}; known: {', '.join(FORMATS)}")
        if fmt != dataset.format:
            raise DatasetError(f"cannot write a {dataset.format} dataset as {fmt}: writers write the format "
                               "they read (conversion between formats is not supported yet)")
        self.format = fmt
        self.out = prepare_output(dataset.root, out_root)
        self._w = _WRITERS[fmt](dataset, self.out)
        self.count = 0

    def add(self, image: str, size, targets: dict, extras: dict | None = None) -> None:
        if not isinstance(image, str) or not image:
            raise DatasetError(f"the image path must be the path relative to the output folder, got {image!r}")
        self._w.add(image, tuple(int(v) for v in size), targets, extras)
        self.count += 1

    def close(self) -> list[str]:
        """Write the dataset-level files; returns every file written (relative paths)."""
        return self._w.close()

    def __enter__(self) -> TargetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def write_targets(dataset: TargetDataset, out_root, entries) -> list[str]:
    """Write ``entries`` — ``(image path relative to out_root, (h, w), targets, extras)`` — as
    ``dataset.format`` into ``out_root`` (never inside ``dataset.root``); the images themselves are the
    caller's. Every file is written atomically. Returns the written files (relative paths)."""
    w = TargetWriter(dataset, out_root)
    for image, size, targets, extras in entries:
        w.add(image, size, targets, extras)
    return w.close()


__all__ = ["FORMATS", "detect_format", "read_targets", "write_targets", "TargetWriter", "canonical"]
