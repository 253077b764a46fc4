"""Mask folders (semantic segmentation): read and write.

Layout: ``images/<path>.<ext>`` and ``masks/<path>.png`` (the same relative path and stem; a mask may also
be another lossless image type). A mask is single-channel, L or P mode (a palette PNG): pixel value = class
index, 255 = ignore. Class names come from an optional ``classes.txt`` at the root (one a line); without it
the class list is empty and the values are taken as they are. Targets: ``mask`` ``H x W`` int64, decoded
on each access. Writing puts ``masks/<path>.png`` next to ``images/<path>.<ext>``: a palette PNG with the
source's palette when the source masks had one, else an L PNG; and ``classes.txt`` when there are classes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from augstudio.core.base.errors import DatasetError, ImageError

from ..images import atomic_write_bytes, read_header
from .model import (
    Problem,
    TargetDataset,
    TargetItem,
    canonical,
    image_size,
    list_images,
    load_mask_png,
    mask_png_bytes,
    out_path,
    read_class_list,
    rel,
    swap_top,
)

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")
MASK_MODES = ("L", "P", "1", "I;16", "I")


def looks_like(root: Path) -> bool:
    return (root / "masks").is_dir() and (root / "images").is_dir()


def _find_mask(root: Path, image: str) -> Path | None:
    base = swap_top(image, "images", "masks", "")
    for ext in MASK_EXTENSIONS:
        if (root / f"{base}{ext}").is_file():
            return root / f"{base}{ext}"
    return None


def read_masks(root) -> TargetDataset:
    root = Path(root)
    if not looks_like(root):
        raise DatasetError(f"{root}: a mask-folder dataset has images/ and masks/ folders")
    class_file = "classes.txt" if (root / "classes.txt").is_file() else None
    classes = read_class_list(root / class_file) if class_file else []
    problems: list[Problem] = []
    items, palette, wanted = [], None, set()
    for p in list_images(root / "images"):
        image = rel(p, root)
        m = _find_mask(root, image)
        if m is None:
            problems.append(Problem(image, f"no mask {swap_top(image, 'images', 'masks', '.png')}; skipped"))
            continue
        mrel = rel(m, root)
        wanted.add(mrel)
        try:
            size = image_size(p)
            mw, mh, mode = read_header(m)
        except ImageError as e:
            problems.append(Problem(e.path and rel(Path(e.path), root) or image, f"{e.cause}; {image} skipped"))
            continue
        if mode not in MASK_MODES:
            problems.append(Problem(mrel, f"a mask must be single-channel (L or P: pixel value = class index), "
                                    f"this one is {mode}; convert colour masks to class indices. {image} skipped"))
            continue
        if (mh, mw) != size:
            problems.append(Problem(mrel, f"mask is {mw}x{mh}, its image {image} is {size[1]}x{size[0]}; skipped"))
            continue
        if palette is None and mode == "P":
            with Image.open(m) as im:
                palette = im.getpalette()
        items.append(TargetItem(image, size, None, {"mask_file": mrel, "mask_mode": mode},
                                load=_loader(m, size, len(classes), mrel)))
    for m in list_images(root / "masks"):
        if rel(m, root) not in wanted and m.suffix.lower() in MASK_EXTENSIONS:
            problems.append(Problem(rel(m, root), "mask for a missing image (no image of the same name under "
                                    "images/); ignored"))
    return TargetDataset(root, "masks", classes, items, problems, {"class_file": class_file, "palette": palette})


def _loader(path: Path, size, n_classes: int, where: str):
    def load() -> dict:
        return canonical({"mask": load_mask_png(path, size, n_classes or None)}, size, where)

    return load


class MaskWriter:
    def __init__(self, dataset: TargetDataset, out: Path):
        self.out, self.classes, self.meta = out, list(dataset.classes), dict(dataset.meta)
        self.written: list[str] = []

    def add(self, image: str, size, targets: dict, extras: dict | None) -> None:
        m_rel = swap_top(image, "images", "masks", ".png")
        if m_rel is None:
            raise DatasetError(f"{image}: a mask-folder dataset keeps its images under images/")
        t = canonical(targets, tuple(size), image)
        if "mask" not in t:
            raise DatasetError(f"{image}: no mask to write")
        others = [k for k in ("boxes", "keypoints") if k in t]
        if others:
            raise DatasetError(f"{image}: a mask folder holds masks only; these targets also have {others}")
        mask = t["mask"]
        if self.classes and mask.dim() == 2 and mask.numel():
            vals = [int(v) for v in mask.unique() if not 0 <= int(v) < len(self.classes) and int(v) != 255]
            if vals:
                raise DatasetError(f"{image}: mask value {vals[0]} is out of range: {len(self.classes)} classes "
                                   "(255 = ignore)")
        atomic_write_bytes(out_path(self.out, m_rel), mask_png_bytes(mask, self.meta.get("palette"), image))
        self.written.append(m_rel)

    def close(self) -> list[str]:
        if not self.classes:
            return list(self.written)
        atomic_write_bytes(out_path(self.out, "classes.txt"), "".join(f"{c}\n" for c in self.classes).encode())
        return [*self.written, "classes.txt"]


__all__ = ["read_masks", "MaskWriter", "looks_like"]
