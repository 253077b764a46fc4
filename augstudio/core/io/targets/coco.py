"""COCO JSON (object detection, instance segmentation, keypoints): read and write.

Reading: the root is a folder holding one COCO JSON (in it or in ``annotations/``), or the JSON file itself
(its folder, or the folder above ``annotations/``, is then the root). Images are found under the JSON's
folder, the root, ``images/`` or a folder named after the JSON's split (``instances_val2017.json`` ->
``val2017/``), whichever holds them.

* ``categories``: ids may be anything; sorted by id they give the class list, so label = position
  (``meta["categories"]`` keeps the dicts, ``category_ids`` maps back).
* ``bbox`` ``[x, y, w, h]`` -> ``boxes`` ``[x, y, x + w, y + h]`` (the same pixel-edge frame).
* ``segmentation`` (polygons, RLE with compressed or list counts) -> ``mask`` ``M x H x W``, one slice per
  annotation in the order of the boxes (an annotation without segmentation gets an empty slice), when any
  annotation of the dataset has a segmentation. Decoded on each access.
* ``keypoints`` ``[x, y, v] * K`` -> flattened ``keypoints`` over the image's annotations in order, with
  ``keypoint_labels`` = the keypoint's index in its category's ``keypoints`` names and ``keypoint_visible``
  = ``v > 0``; ``extras["keypoint_instance"]`` says which annotation (index into the boxes) each keypoint
  belongs to and ``extras["keypoint_v"]`` keeps v. COCO keypoints are integer pixel indices (detectron2's
  reading), so ``x + 0.5`` is stored: the pixel's centre in the targets frame.

Writing: ``bbox`` from the boxes (xywh), ``segmentation`` as RLE with **compressed string counts** (what
``pycocotools.mask.encode`` makes; pycocotools, detectron2 and torchvision's references read it for any
``iscrowd``), ``area`` = the mask's pixel count (box area without a mask), ``iscrowd`` from the extras (0
otherwise), keypoints back per annotation at ``x - 0.5`` with their v (2 for a new visible keypoint) and
``0, 0, 0`` for keypoints that are not visible; ``num_keypoints`` = those with v > 0. Per-annotation extras
(ids, iscrowd, keypoint grouping, other keys) follow ``extras["box_index"]`` when ops dropped boxes (see
``model.per_box``); keypoints of a dropped annotation are dropped with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from augstudio.core.base.errors import DatasetError, ImageError

from ..images import atomic_write_bytes
from . import rle as _rle
from .model import (
    Problem,
    TargetDataset,
    TargetItem,
    canonical,
    check_label_range,
    f32,
    image_size,
    json_num,
    num,
    out_path,
    per_box,
    rel,
)

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANN_KEYS = ("id", "image_id", "category_id", "bbox", "segmentation", "keypoints", "num_keypoints", "area",
             "iscrowd")


def find_annotation_files(root: Path) -> list[Path]:
    """COCO-looking JSON files in ``root`` and ``root/annotations`` (by their first 64 KiB)."""
    out = []
    for folder in (root, root / "annotations"):
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob("*.json")):
            try:
                with open(p, "rb") as f:
                    head = f.read(65536)
            except OSError:
                continue
            if b'"images"' in head or b'"annotations"' in head:
                out.append(p)
    return out


def _locate(root, annotation_file) -> tuple[Path, Path]:
    root = Path(root)
    if annotation_file is None and root.is_file():
        annotation_file, root = root, (root.parent.parent if root.parent.name == "annotations" else root.parent)
    if annotation_file is not None:
        ann = Path(annotation_file)
        ann = ann if ann.is_absolute() or ann.exists() else root / ann
        if not ann.is_file():
            raise DatasetError(f"{ann}: COCO annotation file not found")
        return root, ann
    found = find_annotation_files(root)
    if not found:
        raise DatasetError(f"{root}: no COCO annotation JSON (with 'images' and 'annotations') in the folder or "
                           "its annotations/ folder")
    if len(found) > 1:
        raise DatasetError(f"{root}: several COCO annotation files ({', '.join(rel(p, root) for p in found)}); "
                           "open one of them (give the JSON file instead of the folder)")
    return root, found[0]


def _load_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text, so not a COCO JSON file") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: a COCO file is a JSON object with 'images', 'annotations' and "
                           f"'categories'; this one holds a {type(doc).__name__}")
    for key in ("images", "annotations", "categories"):
        if key in doc and not isinstance(doc[key], list):
            raise DatasetError(f"{path}: '{key}' must be a list, got {type(doc[key]).__name__}")
    if "images" not in doc:
        raise DatasetError(f"{path}: no 'images' list; not a COCO annotation file")
    return doc


def _categories(doc: dict, path: Path) -> tuple[list[dict], dict[int, int]]:
    cats = []
    for i, c in enumerate(doc.get("categories", [])):
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)):
            raise DatasetError(f"{path}: categories[{i}] needs an integer 'id' and a 'name'")
        if not isinstance(c.get("keypoints", []), list):
            raise DatasetError(f"{path}: category {c['name']!r}: 'keypoints' must be a list of names")
        cats.append(c)
    ids = [c["id"] for c in cats]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetError(f"{path}: category id(s) {dup} appear more than once")
    cats.sort(key=lambda c: c["id"])
    return cats, {c["id"]: i for i, c in enumerate(cats)}


def _image_dir(root: Path, ann: Path, names: list[str]) -> Path:
    cands = [ann.parent, root, root / "images", ann.parent.parent, ann.parent.parent / "images"]
    split = ann.stem.split("_")[-1]
    cands += [root / split, root / "images" / split]
    cands += sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    seen, uniq = set(), []
    for c in cands:
        key = str(c.resolve())
        if key not in seen and c.is_dir():
            seen.add(key)
            uniq.append(c)
    sample = names[:50]
    best = max(uniq, key=lambda c: sum((c / n).is_file() for n in sample), default=root)
    return best


def _bad_name(name) -> bool:
    if not isinstance(name, str) or not name:
        return True
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or "\\" in name


def read_coco(root, annotation_file=None, check_images: bool = True) -> TargetDataset:
    root, ann_path = _locate(root, annotation_file)
    doc = _load_json(ann_path)
    where = rel(ann_path, root) if ann_path.is_relative_to(root) else str(ann_path)
    cats, cat_index = _categories(doc, ann_path)
    problems: list[Problem] = []
    images: dict = {}
    for i, im in enumerate(doc["images"]):
        ok = (isinstance(im, dict) and isinstance(im.get("id"), (int, str)) and not _bad_name(im.get("file_name"))
              and isinstance(im.get("width"), int) and isinstance(im.get("height"), int)
              and im["width"] > 0 and im["height"] > 0)
        if not ok:
            problems.append(Problem(where, f"images[{i}] needs 'id', a relative 'file_name' and positive "
                                    "integer 'width' and 'height'; skipped"))
        elif im["id"] in images:
            problems.append(Problem(where, f"images[{i}]: image id {im['id']!r} appears twice; the second "
                                    "is skipped"))
        else:
            images[im["id"]] = im
    img_dir = _image_dir(root, ann_path, [im["file_name"] for im in images.values()])
    by_image: dict = {k: [] for k in images}
    for i, a in enumerate(doc.get("annotations", [])):
        if not isinstance(a, dict) or "image_id" not in a:
            problems.append(Problem(where, f"annotations[{i}] is not an object with an 'image_id'; skipped"))
        elif a["image_id"] not in by_image:
            problems.append(Problem(where, f"annotation id {a.get('id')!r} refers to image id "
                                    f"{a['image_id']!r}, which is not in 'images'; skipped"))
        else:
            by_image[a["image_id"]].append(a)
    has_masks = any("segmentation" in a and a["segmentation"] not in (None, [])
                    for anns in by_image.values() for a in anns)
    has_kpts = any(c.get("keypoints") for c in cats)
    items = []
    for img_id, im in images.items():
        path = img_dir / im["file_name"]
        image = rel(path, root)
        size = (im["height"], im["width"])
        if not path.is_file():
            problems.append(Problem(image, f"listed in {where} (image id {img_id!r}) but the file is missing; "
                                    "skipped"))
            continue
        if check_images:
            try:
                real = image_size(path)
            except ImageError as e:
                problems.append(Problem(image, f"{e.cause}; skipped"))
                continue
            if real != size:
                problems.append(Problem(image, f"{where} says {size[1]}x{size[0]}, the file is "
                                        f"{real[1]}x{real[0]} (width x height); skipped"))
                continue
        try:
            items.append(_item(image, size, im, by_image[img_id], cats, cat_index, has_masks, has_kpts))
        except DatasetError as e:
            problems.append(Problem(image, f"{where}: {e}; skipped"))
    meta = {"annotation_file": rel(ann_path, root) if ann_path.is_relative_to(root) else ann_path.name,
            "image_dir": rel(img_dir, root) if img_dir != root else "",
            "categories": cats, "category_ids": [c["id"] for c in cats],
            "top": {k: v for k, v in doc.items() if k not in ("images", "annotations", "categories")}}
    return TargetDataset(root, "coco", [c["name"] for c in cats], items, problems, meta)


def _item(image, size, im, anns, cats, cat_index, has_masks, has_kpts) -> TargetItem:
    boxes, labels, segs, iscrowd, ann_ids, others = [], [], [], [], [], []
    kxy, klab, kv, kinst = [], [], [], []
    for n, a in enumerate(anns):
        aid = a.get("id")
        tag = f"annotation id {aid!r}"
        if a.get("category_id") not in cat_index:
            raise DatasetError(f"{tag}: category_id {a.get('category_id')!r} is not among the categories")
        label = cat_index[a["category_id"]]
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)
                and all(math.isfinite(v) for v in bb) and bb[2] >= 0 and bb[3] >= 0):
            raise DatasetError(f"{tag}: bbox must be [x, y, width, height] with width, height >= 0; got {bb!r}")
        x1, y1 = f32(bb[0]), f32(bb[1])
        boxes.append([x1, y1, x1 + float(bb[2]), y1 + float(bb[3])])
        labels.append(label)
        seg = a.get("segmentation")
        if seg in (None, []):
            seg = None
        else:
            why = _rle.check_segmentation(seg, size)
            if why:
                raise DatasetError(f"{tag}: segmentation: {why}")
        segs.append(seg)
        iscrowd.append(int(a.get("iscrowd", 0) or 0))
        ann_ids.append(aid)
        others.append({k: v for k, v in a.items() if k not in _ANN_KEYS})
        kp = a.get("keypoints")
        if kp is None or kp == []:
            continue
        names = cats[label].get("keypoints", [])
        if not (isinstance(kp, list) and len(kp) == 3 * len(names)
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in kp)):
            raise DatasetError(f"{tag}: keypoints must be [x, y, v] for each of the {len(names)} keypoint names "
                               f"of category {cats[label]['name']!r}; got {len(kp) if isinstance(kp, list) else kp!r}"
                               " values")
        for j in range(len(names)):
            x, y, v = kp[3 * j: 3 * j + 3]
            if v not in (0, 1, 2):
                raise DatasetError(f"{tag}: keypoint {names[j]!r} has visibility {v!r}; COCO uses 0, 1, 2")
            kxy.append([float(x) + 0.5, float(y) + 0.5])
            klab.append(j)
            kv.append(int(v))
            kinst.append(n)
    extras = {"image_id": im["id"], "file_name": im["file_name"],
              "image_info": {k: v for k, v in im.items() if k not in _IMAGE_KEYS},
              "annotation_ids": ann_ids, "iscrowd": iscrowd, "has_segmentation": [s is not None for s in segs],
              "annotation_extra": others}
    base = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "box_labels": torch.tensor(labels, dtype=torch.int64)}
    if has_kpts:
        extras["keypoint_instance"], extras["keypoint_v"] = kinst, kv
        base["keypoints"] = torch.tensor(kxy, dtype=torch.float32).reshape(-1, 2)
        base["keypoint_labels"] = torch.tensor(klab, dtype=torch.int64)
        base["keypoint_visible"] = torch.tensor([v > 0 for v in kv], dtype=torch.bool)
    base = canonical(base, size, image)
    if not has_masks:
        return TargetItem(image, size, base, extras)

    def load() -> dict:
        out = {k: v.clone() for k, v in base.items()}
        m = np.zeros((len(segs), *size), dtype=np.int64)
        for i, s in enumerate(segs):
            if s is not None:
                m[i] = _rle.segmentation_to_mask(s, size)
        out["mask"] = torch.from_numpy(m)
        return out

    return TargetItem(image, size, None, extras, load=load)


class CocoWriter:
    """Collects entries and writes one COCO JSON on ``close()`` (at ``meta["annotation_file"]``, default
    ``annotations/instances.json``; ``file_name`` relative to ``meta["image_dir"]`` when every image lies
    under it, else to the root)."""

    def __init__(self, dataset: TargetDataset, out: Path):
        self.out, self.classes, self.meta = out, list(dataset.classes), dict(dataset.meta)
        cats = self.meta.get("categories")
        if not (isinstance(cats, list) and [c.get("name") for c in cats] == self.classes):
            cats = [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(self.classes)]
        self.cats = cats
        self.images: list[dict] = []
        self.anns: list[list[dict]] = []

    def add(self, image: str, size, targets: dict, extras: dict | None) -> None:
        extras = extras or {}
        t = canonical(targets, tuple(size), image)
        boxes = t.get("boxes", torch.zeros((0, 4)))
        labels = t.get("box_labels", torch.zeros(0, dtype=torch.int64))
        n = len(boxes)
        why = check_label_range(labels.tolist(), len(self.classes), "box label")
        if why:
            raise DatasetError(f"{image}: {why}")
        mask = t.get("mask")
        if mask is not None and (mask.dim() != 3 or len(mask) != n):
            raise DatasetError(f"{image}: COCO needs instance masks M x H x W with one mask per box ({n}); got "
                               f"shape {tuple(mask.shape)}")

        had_seg, crowd, ids, other = (per_box(extras, "has_segmentation", n, True), per_box(extras, "iscrowd", n, 0),
                                      per_box(extras, "annotation_ids", n, None),
                                      per_box(extras, "annotation_extra", n, {}))
        groups = self._keypoints(image, t, extras, labels, n)
        anns = []
        for i in range(n):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            a = {"id": ids[i], "image_id": None, "category_id": self.cats[int(labels[i])]["id"]}
            a.update(other[i] if isinstance(other[i], dict) else {})
            a["bbox"] = [json_num(num(x1)), json_num(num(y1)), *_wh(x1, y1, x2, y2)]
            area = (x2 - x1) * (y2 - y1)
            if mask is not None:
                m = mask[i].numpy() != 0
                if m.any() or had_seg[i]:
                    a["segmentation"] = _rle.encode(m)
                    area = int(m.sum())
            a["area"] = json_num(area)
            a["iscrowd"] = int(crowd[i] or 0)
            if i in groups:
                a["keypoints"], a["num_keypoints"] = groups[i], sum(1 for v in groups[i][2::3] if v > 0)
            anns.append(a)
        info = dict(extras.get("image_info") or {})
        self.images.append({"id": extras.get("image_id"), "file_name": image, "width": int(size[1]),
                            "height": int(size[0]), **info})
        self.anns.append(anns)

    def _keypoints(self, image, t, extras, labels, n) -> dict[int, list]:
        kp = t.get("keypoints")
        if kp is None or len(kp) == 0:
            return {}
        k = len(kp)
        inst = extras.get("keypoint_instance")
        if not (isinstance(inst, list) and len(inst) == k):
            raise DatasetError(f"{image}: {k} keypoints but no extras['keypoint_instance'] (the box index of each "
                               "keypoint) to group them into COCO annotations")
        vs = extras.get("keypoint_v")
        vs = vs if isinstance(vs, list) and len(vs) == k else [2] * k
        idx = extras.get("box_index")
        new_index = {int(src): i for i, src in enumerate(idx)} if isinstance(idx, list) and len(idx) == n else None
        out: dict[int, list] = {}
        for q in range(k):
            i, j = int(inst[q]), int(t["keypoint_labels"][q])
            if new_index is not None:
                if i not in new_index:
                    continue  # its box (annotation) was dropped: so is the keypoint
                i = new_index[i]
            if not 0 <= i < n:
                raise DatasetError(f"{image}: keypoint {q} belongs to box {i}, but there are {n} boxes")
            names = self.cats[int(labels[i])].get("keypoints", [])
            if not 0 <= j < len(names):
                raise DatasetError(f"{image}: keypoint label {j} is out of range for category "
                                   f"{self.cats[int(labels[i])]['name']!r} ({len(names)} keypoint names)")
            arr = out.setdefault(i, [0] * (3 * len(names)))
            if bool(t["keypoint_visible"][q]):
                x, y = float(kp[q, 0]) - 0.5, float(kp[q, 1]) - 0.5
                arr[3 * j: 3 * j + 3] = [json_num(x), json_num(y), int(vs[q]) if vs[q] in (1, 2) else 2]
        return out

    def close(self) -> list[str]:
        ann_rel = self.meta.get("annotation_file") or "annotations/instances.json"
        img_dir = self.meta.get("image_dir") or ""
        prefix = f"{img_dir}/" if img_dir else ""
        if not all(im["file_name"].startswith(prefix) for im in self.images):
            prefix, img_dir = "", ""
        ids = [im["id"] for im in self.images]
        if None in ids or len(set(map(repr, ids))) != len(ids):
            ids = list(range(1, len(self.images) + 1))
        aids = [a["id"] for anns in self.anns for a in anns]
        renumber = None in aids or len(set(map(repr, aids))) != len(aids)
        images, annotations, next_id = [], [], 1
        for im, img_id, anns in zip(self.images, ids, self.anns):
            images.append({**im, "id": img_id, "file_name": im["file_name"][len(prefix):]})
            for a in anns:
                a["image_id"] = img_id
                if renumber:
                    a["id"], next_id = next_id, next_id + 1
                annotations.append(a)
        doc = dict(self.meta.get("top") or {})
        doc.update({"images": images, "annotations": annotations, "categories": self.cats})
        atomic_write_bytes(out_path(self.out, ann_rel), json.dumps(doc, ensure_ascii=False).encode("utf-8"))
        return [ann_rel]


def _wh(x1: float, y1: float, x2: float, y2: float) -> list:
    """Width and height that read back (x + w in float64, then float32) as exactly x2 and y2: the fewest
    decimals that do, else the exact float64 difference."""
    out = []
    for a, b in ((x1, x2), (y1, y2)):
        a_read, d = float(np.float32(float(num(a)))), b - float(np.float32(float(num(a))))
        exact = next((round(d, k) for k in range(10) if f32(a_read + round(d, k)) == f32(b)), d)
        out.append(json_num(exact))
    return out


__all__ = ["read_coco", "CocoWriter", "find_annotation_files"]
