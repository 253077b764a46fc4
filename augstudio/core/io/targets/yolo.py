"""YOLO txt (Ultralytics / darknet detection): read and write.

Layout: images under a folder named ``images`` (``images/a.jpg``, ``images/train/a.jpg`` or
``train/images/a.jpg``) and one label file per image at the same path with the last ``images`` folder
replaced by ``labels`` and the extension by ``.txt``. A line is ``class cx cy w h``: the class index and the
box centre and size divided by the image width / height (0..1). An image without a label file has no
objects (Ultralytics' reading); a label file without its image is reported.

Class names come from ``classes.txt`` (one a line; at the root or in ``labels/``) or the ``names:`` of a
``data.yaml`` / ``dataset.yaml`` at the root (a list, or a mapping ``{0: name, ...}``); without either, the
classes are ``"0" .. "<largest index>"``. Writing puts the names back where they came from (``classes.txt``
when they came from nowhere), the other keys of the YAML file untouched.

Boxes: ``x1 = (cx - w / 2) * W`` ... in float64, stored float32; written with 8 decimals (a box reads back
within 1e-4 px for images up to 20 000 px). Segment and pose lines (more than 5 values) are not read: the
image is reported and skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

from augstudio.core.base.errors import DatasetError, ImageError

from ..images import atomic_write_bytes
from .model import (
    Problem,
    TargetDataset,
    TargetItem,
    canonical,
    check_label_range,
    image_size,
    list_images,
    out_path,
    read_class_list,
    read_lines,
    rel,
    swap_top,
)

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def _image_files(root: Path) -> list[Path]:
    return [p for p in list_images(root) if "images" in p.relative_to(root).parts[:-1]]


def _label_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.txt") if "labels" in p.relative_to(root).parts[:-1]
                  and p.name != "classes.txt" and not any(s.startswith(".") for s in p.relative_to(root).parts))


def looks_like(root: Path) -> bool:
    """``images/`` and ``labels/`` (holding a .txt) side by side at the root or one folder down (cheap)."""
    tops = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return any((t / "images").is_dir() and next((t / "labels").rglob("*.txt"), None) is not None for t in tops)


def _read_yaml(path: Path) -> tuple[dict, list[str], str]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise DatasetError(f"{path}: malformed YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read: {e}") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise DatasetError(f"{path}: no 'names:' list of class names")
    names = doc["names"]
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: 'names:' as a mapping needs the keys 0..{len(keys) - 1}, got {keys[:8]}")
        return doc, [str(names[k]) for k in keys], "dict"
    if isinstance(names, list):
        return doc, [str(n) for n in names], "list"
    raise DatasetError(f"{path}: 'names:' must be a list or a mapping of class names, got {type(names).__name__}")


def _classes(root: Path) -> tuple[list[str] | None, dict]:
    for cand in (root / "classes.txt", root / "labels" / "classes.txt"):
        if cand.is_file():
            return read_class_list(cand), {"class_source": rel(cand, root)}
    for name in YAML_NAMES:
        if (root / name).is_file():
            doc, names, form = _read_yaml(root / name)
            return names, {"class_source": name, "yaml": doc, "names_form": form}
    return None, {"class_source": None}


def _parse(text_lines: list[str], size, n_classes: int | None) -> tuple[list, list]:
    h, w = size
    boxes, labels = [], []
    for n, line in enumerate(text_lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"line {n} has {len(parts)} values; a YOLO box line is 'class cx cy w h' (segment "
                               "and pose lines are not read)")
        try:
            cls = int(parts[0])
            cx, cy, bw, bh = (float(v) for v in parts[1:])
        except ValueError:
            raise DatasetError(f"line {n}: {line.strip()!r} is not 'class cx cy w h' (a whole class index and "
                               "four numbers)") from None
        if not all(math.isfinite(v) for v in (cx, cy, bw, bh)) or bw < 0 or bh < 0:
            raise DatasetError(f"line {n}: width and height must be finite numbers >= 0, got {bw} {bh}")
        if n_classes is not None:
            why = check_label_range([cls], n_classes, "class index")
            if why:
                raise DatasetError(f"line {n}: {why}")
        elif cls < 0:
            raise DatasetError(f"line {n}: class index {cls} is negative")
        boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        labels.append(cls)
    return boxes, labels


def read_yolo(root) -> TargetDataset:
    root = Path(root)
    classes, meta = _classes(root)
    problems: list[Problem] = []
    images = _image_files(root)
    if not images:
        raise DatasetError(f"{root}: no images under an images/ folder (YOLO layout: images/ and labels/)")
    wanted = set()
    items = []
    for p in images:
        image = rel(p, root)
        lab_rel = swap_top(image, "images", "labels", ".txt")
        wanted.add(lab_rel)
        try:
            size = image_size(p)
        except ImageError as e:
            problems.append(Problem(image, f"{e.cause}; skipped"))
            continue
        lab = root / lab_rel
        boxes, labels = [], []
        if lab.is_file():
            try:
                boxes, labels = _parse(read_lines(lab), size, None if classes is None else len(classes))
            except DatasetError as e:
                problems.append(Problem(lab_rel, f"{e}; image {image} skipped"))
                continue
        items.append(TargetItem(image, size, {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                              "box_labels": torch.tensor(labels, dtype=torch.int64)},
                                {"label_file": lab.is_file()}))
    for lab in _label_files(root):
        r = rel(lab, root)
        if r not in wanted:
            problems.append(Problem(r, "label file for a missing image (no image of the same name under "
                                    f"{swap_top(r, 'labels', 'images', '.*') or 'images/'}); ignored"))
    if classes is None:
        top = max((int(v) for it in items for v in it.targets["box_labels"]), default=-1)
        classes = [str(i) for i in range(top + 1)]
    for it in items:
        it._targets = canonical(it._targets, it.size, it.image)
    return TargetDataset(root, "yolo", classes, items, problems, meta)


def _fmt(v: float) -> str:
    s = f"{v:.8f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


class YoloWriter:
    def __init__(self, dataset: TargetDataset, out: Path):
        self.out, self.classes, self.meta = out, list(dataset.classes), dict(dataset.meta)
        self.written: list[str] = []

    def add(self, image: str, size, targets: dict, extras: dict | None) -> None:
        lab_rel = swap_top(image, "images", "labels", ".txt")
        if lab_rel is None:
            raise DatasetError(f"{image}: a YOLO dataset keeps its images under an images/ folder")
        t = canonical(targets, tuple(size), image)
        extra_kinds = [k for k in ("mask", "keypoints") if k in t]
        if extra_kinds:
            raise DatasetError(f"{image}: YOLO txt holds boxes only; these targets also have {extra_kinds}")
        boxes = t.get("boxes", torch.zeros((0, 4)))
        labels = t.get("box_labels", torch.zeros(0, dtype=torch.int64)).tolist()
        why = check_label_range(labels, len(self.classes), "box label")
        if why:
            raise DatasetError(f"{image}: {why}")
        if not len(boxes) and extras is not None and extras.get("label_file") is False:
            return  # the source had no label file for this image: none is written
        h, w = (float(v) for v in size)
        lines = []
        for (x1, y1, x2, y2), c in zip(boxes.double().tolist(), labels):
            vals = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
            lines.append(" ".join([str(int(c)), *(_fmt(v) for v in vals)]))
        atomic_write_bytes(out_path(self.out, lab_rel), "".join(f"{ln}\n" for ln in lines).encode("utf-8"))
        self.written.append(lab_rel)

    def close(self) -> list[str]:
        src = self.meta.get("class_source")
        if src in YAML_NAMES and isinstance(self.meta.get("yaml"), dict):
            doc = dict(self.meta["yaml"])
            doc["names"] = (dict(enumerate(self.classes)) if self.meta.get("names_form") == "dict"
                            else list(self.classes))
            data = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
        else:
            src = src if src in ("classes.txt", "labels/classes.txt") else "classes.txt"
            data = "".join(f"{c}\n" for c in self.classes).encode("utf-8")
        atomic_write_bytes(out_path(self.out, src), data)
        return [*self.written, src]


__all__ = ["read_yolo", "YoloWriter", "looks_like"]
