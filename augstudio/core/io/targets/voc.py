"""Pascal VOC XML: read and write.

Layout: ``JPEGImages/<name>.<ext>``, ``Annotations/<name>.xml`` (one per image; the items follow the XML
files) and optionally ``SegmentationClass/<name>.png`` (a categorical mask: pixel value = class index, 255 =
ignore, usually a palette PNG). ``ImageSets/`` is not read or written.

Boxes: ``bndbox`` is 1-based and inclusive, so ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` in the
pixel-edge frame (and back). Per object, ``difficult``, ``truncated``, ``occluded`` and ``pose`` are kept in
``extras`` (lists aligned with the boxes) and written back (through ``extras["box_index"]`` when ops dropped
boxes; see ``model.per_box``).

Classes: ``classes.txt`` or ``labels.txt`` at the root (one name a line, the line number is the class index);
otherwise the 20 VOC classes with ``background`` at 0 (VOC's mask values) when every object name is one of
them; otherwise the object names sorted, after ``background`` when the dataset has masks. Writing writes
``classes.txt`` unless the classes are VOC's own.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image

from augstudio.core.base.errors import DatasetError, ImageError

from ..images import IMAGE_EXTENSIONS, atomic_write_bytes, read_header
from .model import (
    Problem,
    TargetDataset,
    TargetItem,
    canonical,
    check_label_range,
    image_size,
    load_mask_png,
    mask_png_bytes,
    out_path,
    per_box,
    read_class_list,
    rel,
    swap_top,
)

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


def voc_palette() -> list[int]:
    """The VOC colour map (256 RGB entries) of its SegmentationClass PNGs."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def looks_like(root: Path) -> bool:
    return (root / "Annotations").is_dir() and any((root / "Annotations").glob("*.xml"))


def _text(el, tag: str, default=None):
    sub = el.find(tag)
    return sub.text.strip() if sub is not None and sub.text is not None else default


def _number(el, tag: str, where: str) -> float:
    raw = _text(el, tag)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: <{tag}> is {raw!r}, not a number") from None
    if not math.isfinite(v):
        raise DatasetError(f"{where}: <{tag}> is {raw!r}, not a finite number")
    return v


def _flag(el, tag: str):
    raw = _text(el, tag)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return raw


def _parse(path: Path) -> tuple[ET.Element, list[dict]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = getattr(e, "position", (0, 0))
        raise DatasetError(f"malformed XML at line {line}, column {col + 1}") from None
    except OSError as e:
        raise DatasetError(f"cannot read: {e.strerror or e}") from None
    if root.tag != "annotation":
        raise DatasetError(f"the root element is <{root.tag}>, a VOC file has <annotation>")
    objects = []
    for i, obj in enumerate(root.findall("object"), start=1):
        name = _text(obj, "name")
        where = f"object {i} ({name!r})" if name else f"object {i}"
        if not name:
            raise DatasetError(f"{where} has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetError(f"{where} has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin - 1 or ymax < ymin - 1:
            raise DatasetError(f"{where}: xmax/ymax ({xmax}, {ymax}) lie before xmin/ymin ({xmin}, {ymin})")
        objects.append({"name": name, "box": [xmin - 1, ymin - 1, xmax, ymax], "pose": _text(obj, "pose"),
                        "difficult": _flag(obj, "difficult"), "truncated": _flag(obj, "truncated"),
                        "occluded": _flag(obj, "occluded")})
    return root, objects


def _find_image(root: Path, filename: str | None, stem: str) -> Path | None:
    folder = root / "JPEGImages"
    if filename and "/" not in filename and "\\" not in filename and (folder / filename).is_file():
        return folder / filename
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            if (folder / f"{stem}{e}").is_file():
                return folder / f"{stem}{e}"
    return None


def _classes(root: Path, names: set[str], has_masks: bool) -> tuple[list[str], str | None]:
    for cand in ("classes.txt", "labels.txt"):
        if (root / cand).is_file():
            return read_class_list(root / cand), cand
    if names <= set(VOC_CLASSES[1:]):
        return list(VOC_CLASSES), None
    return (["background"] if has_masks else []) + sorted(names - {"background"}), None


def read_voc(root) -> TargetDataset:
    root = Path(root)
    ann_dir = root / "Annotations"
    xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise DatasetError(f"{root}: no Annotations/*.xml (Pascal VOC layout: JPEGImages/, Annotations/)")
    problems: list[Problem] = []
    parsed = []
    for x in xmls:
        xr = rel(x, root)
        try:
            el, objects = _parse(x)
        except DatasetError as e:
            problems.append(Problem(xr, f"{e}; skipped"))
            continue
        img = _find_image(root, _text(el, "filename"), x.stem)
        if img is None:
            problems.append(Problem(xr, f"annotation for a missing image (no JPEGImages/{x.stem}.* and no "
                                    f"JPEGImages/{_text(el, 'filename')}); skipped"))
            continue
        parsed.append((x, el, objects, img))
    seg_dir = root / "SegmentationClass"
    has_masks = seg_dir.is_dir()
    classes, class_file = _classes(root, {o["name"] for _, _, objs, _ in parsed for o in objs}, has_masks)
    index = {c: i for i, c in enumerate(classes)}
    palette = None
    items = []
    for x, el, objects, img in parsed:
        xr, image = rel(x, root), rel(img, root)
        try:
            size = image_size(img)
        except ImageError as e:
            problems.append(Problem(image, f"{e.cause}; skipped"))
            continue
        xw, xh = _number_or_zero(el, "size/width"), _number_or_zero(el, "size/height")
        if xw and xh and (xh, xw) != size:
            problems.append(Problem(xr, f"says the image is {int(xw)}x{int(xh)}, {image} is {size[1]}x{size[0]} "
                                    "(width x height); skipped"))
            continue
        unknown = [o["name"] for o in objects if o["name"] not in index]
        if unknown:
            problems.append(Problem(xr, f"object name {unknown[0]!r} is not in {class_file or 'the classes'}; "
                                    "skipped"))
            continue
        targets = {"boxes": torch.tensor([o["box"] for o in objects], dtype=torch.float64).float().reshape(-1, 4),
                   "box_labels": torch.tensor([index[o["name"]] for o in objects], dtype=torch.int64)}
        targets = canonical(targets, size, xr)
        extras = {"filename": _text(el, "filename"), "folder": _text(el, "folder"),
                  "depth": _text(el, "size/depth"), "segmented": _text(el, "segmented"),
                  "source": _children(el.find("source"))}
        for k in ("pose", "difficult", "truncated", "occluded"):
            extras[k] = [o[k] for o in objects]
        mpath = seg_dir / f"{img.stem}.png"
        if not mpath.is_file():
            items.append(TargetItem(image, size, targets, extras))
            continue
        try:
            mw, mh, mode = read_header(mpath)
        except ImageError as e:
            problems.append(Problem(rel(mpath, root), f"{e.cause}; {image} skipped"))
            continue
        if (mh, mw) != size:
            problems.append(Problem(rel(mpath, root), f"mask is {mw}x{mh}, its image {image} is {size[1]}x{size[0]};"
                                    " skipped"))
            continue
        if palette is None and mode == "P":
            with Image.open(mpath) as im:
                palette = im.getpalette()
        extras["mask_file"] = True
        items.append(TargetItem(image, size, None, extras, load=_mask_loader(targets, mpath, size, len(classes))))
    meta = {"class_file": class_file, "palette": palette}
    return TargetDataset(root, "voc", classes, items, problems, meta)


def _children(el) -> dict:
    return {} if el is None else {c.tag: (c.text or "").strip() for c in el}


def _number_or_zero(el, path: str) -> float:
    try:
        return float(_text(el, path, "0") or 0)
    except ValueError:
        return 0.0


def _mask_loader(targets: dict, path: Path, size, n_classes: int):
    def load() -> dict:
        out = {k: v.clone() for k, v in targets.items()}
        out["mask"] = load_mask_png(path, size, n_classes)
        return out

    return load


def _num_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class VocWriter:
    def __init__(self, dataset: TargetDataset, out: Path):
        self.out, self.classes, self.meta = out, list(dataset.classes), dict(dataset.meta)
        self.written: list[str] = []

    def add(self, image: str, size, targets: dict, extras: dict | None) -> None:
        extras = extras or {}
        xml_rel = swap_top(image, "JPEGImages", "Annotations", ".xml")
        if xml_rel is None:
            raise DatasetError(f"{image}: a VOC dataset keeps its images under JPEGImages/")
        t = canonical(targets, tuple(size), image)
        if "keypoints" in t:
            raise DatasetError(f"{image}: Pascal VOC XML holds boxes and class masks, not keypoints")
        boxes = t.get("boxes", torch.zeros((0, 4)))
        labels = t.get("box_labels", torch.zeros(0, dtype=torch.int64)).tolist()
        why = check_label_range(labels, len(self.classes), "box label")
        if why:
            raise DatasetError(f"{image}: {why}")
        n = len(labels)

        pose, diff, trunc, occ = (per_box(extras, k, n, d) for k, d in (("pose", "Unspecified"), ("difficult", 0),
                                                                       ("truncated", 0), ("occluded", None)))
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = extras.get("folder") or "JPEGImages"
        ET.SubElement(root, "filename").text = image.rsplit("/", 1)[-1]
        if extras.get("source"):
            src = ET.SubElement(root, "source")
            for k, v in extras["source"].items():
                ET.SubElement(src, k).text = v
        sz = ET.SubElement(root, "size")
        ET.SubElement(sz, "width").text = str(int(size[1]))
        ET.SubElement(sz, "height").text = str(int(size[0]))
        ET.SubElement(sz, "depth").text = str(extras.get("depth") or 3)
        ET.SubElement(root, "segmented").text = "1" if "mask" in t else "0"
        for (x1, y1, x2, y2), c, p, d, tr, oc in zip(boxes.double().tolist(), labels, pose, diff, trunc, occ):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = self.classes[int(c)]
            ET.SubElement(obj, "pose").text = str(p if p is not None else "Unspecified")
            ET.SubElement(obj, "truncated").text = str(tr if tr is not None else 0)
            ET.SubElement(obj, "difficult").text = str(d if d is not None else 0)
            if oc is not None:
                ET.SubElement(obj, "occluded").text = str(oc)
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bb, tag).text = _num_text(v)
        ET.indent(root)
        atomic_write_bytes(out_path(self.out, xml_rel), ET.tostring(root, encoding="utf-8", xml_declaration=False))
        self.written.append(xml_rel)
        if "mask" in t:
            m_rel = swap_top(image, "JPEGImages", "SegmentationClass", ".png")
            data = mask_png_bytes(t["mask"], self.meta.get("palette") or voc_palette(), m_rel)
            atomic_write_bytes(out_path(self.out, m_rel), data)
            self.written.append(m_rel)

    def close(self) -> list[str]:
        if self.classes == VOC_CLASSES and not self.meta.get("class_file"):
            return list(self.written)
        name = self.meta.get("class_file") or "classes.txt"
        atomic_write_bytes(out_path(self.out, name), "".join(f"{c}\n" for c in self.classes).encode("utf-8"))
        return [*self.written, name]


__all__ = ["read_voc", "VocWriter", "VOC_CLASSES", "voc_palette", "looks_like"]
