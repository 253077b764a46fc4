"""The bundled sample dataset, built deterministically (``python -m augstudio.core.samples``).

* ``wafers/``: 64x64 palette PNGs of semiconductor wafer maps with three values (0 off-wafer, 1 pass die,
  2 fail die), in nine classes named like the WM-811K defect patterns, drawn procedurally with random
  placement and noise.
* ``shapes/``: 128x128 RGB JPEGs of four shape classes (circle, square, triangle, star), each shape filled
  with a random procedural texture on another textured background: shape is the label, texture the
  nuisance (the Stylized-ImageNet story). ``shapes/boxes.json`` holds each object's bounding box
  ``[x0, y0, x1, y1]`` (pixels, x1/y1 exclusive) for measuring saliency localisation.
* targets: each folder's ``annotations.json`` (COCO) gives every object its box, its mask (RLE) and, for
  the shapes, its vertices as keypoints (a circle: its centre); a wafer's object is its defect region (the
  pattern before random thinning; Random and none have none). ``augstudio.core.io.targets.read_targets``
  reads them; the app overlays them.

The builder uses numpy's explicit ``default_rng(seed)``; same seed, same bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .images import atomic_write_bytes

WAFER_CLASSES = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
SHAPE_CLASSES = ("circle", "square", "triangle", "star")
WAFER_PALETTE = [68, 1, 84, 33, 145, 140, 253, 231, 37]  # off-wafer, pass, fail (viridis ends)
PER_CLASS = 15
WAFER_SIZE = 64
SHAPE_SIZE = 128


def samples_dir() -> Path:
    """The bundled samples: resources/samples in a source checkout, else a per-user cache built on demand."""
    repo = Path(__file__).resolve().parents[3] / "resources" / "samples"
    if (repo / "wafers").is_dir():
        return repo
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "augstudio" / "samples"
    if not (cache / "wafers").is_dir():
        build(cache)
    return cache


# -- wafer maps -------------------------------------------------------------------------------------------
def _wafer(rng: np.random.Generator, cls: str, n: int = WAFER_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
    """The map (0 off-wafer, 1 pass, 2 fail) and its defect region (the pattern before random thinning;
    None for Random and none). The region costs no draws, so the maps are the bytes they always were."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    c = (n - 1) / 2
    radius = n / 2 - 2
    r = np.hypot(yy - c, xx - c)
    theta = np.arctan2(yy - c, xx - c)
    on = r <= radius
    fail = rng.random((n, n)) < rng.uniform(0.01, 0.05)  # background defects
    region = None
    if cls == "Center":
        cy, cx = c + rng.normal(0, 2, 2)
        rad = rng.uniform(5, 11)
        region = np.hypot(yy - cy, xx - cx) < rad
        fail |= region & (rng.random((n, n)) < 0.9)
    elif cls == "Donut":
        r0 = rng.uniform(9, 17)
        w = rng.uniform(3, 6)
        region = np.abs(r - r0) < w / 2
        fail |= region & (rng.random((n, n)) < 0.85)
    elif cls == "Edge-Loc":
        a = rng.uniform(-math.pi, math.pi)
        ey, ex = c + (radius - 3) * math.sin(a), c + (radius - 3) * math.cos(a)
        region = np.hypot(yy - ey, xx - ex) < rng.uniform(5, 9)
        fail |= region & (rng.random((n, n)) < 0.85)
    elif cls == "Edge-Ring":
        w = rng.uniform(2, 4)
        region = r > radius - w
        fail |= region & (rng.random((n, n)) < 0.85)
    elif cls == "Loc":
        rr = rng.uniform(8, radius - 10)
        a = rng.uniform(-math.pi, math.pi)
        ly, lx = c + rr * math.sin(a), c + rr * math.cos(a)
        region = np.hypot(yy - ly, xx - lx) < rng.uniform(3.5, 7)
        fail |= region & (rng.random((n, n)) < 0.9)
    elif cls == "Near-full":
        region = on
        fail |= rng.random((n, n)) < rng.uniform(0.8, 0.95)
    elif cls == "Random":
        fail |= rng.random((n, n)) < rng.uniform(0.2, 0.4)
    elif cls == "Scratch":
        a = rng.uniform(0, math.pi)
        off = rng.uniform(-radius / 2, radius / 2)
        bend = rng.uniform(-0.01, 0.01)
        d = (xx - c) * math.sin(a) - (yy - c) * math.cos(a) - off
        along = (xx - c) * math.cos(a) + (yy - c) * math.sin(a)
        half = rng.uniform(radius * 0.4, radius * 0.9)
        start = rng.uniform(-radius / 3, radius / 3)
        region = (np.abs(d + bend * along**2) < 1.0) & (np.abs(along - start) < half)
        fail |= region
    elif cls == "none":
        pass
    _ = theta
    m = np.zeros((n, n), np.uint8)
    m[on] = 1
    m[on & fail] = 2
    return m, (None if region is None else region & on)


def wafer_png(arr: np.ndarray) -> bytes:
    im = Image.fromarray(arr, mode="P")
    im.putpalette(WAFER_PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


# -- textured shapes ----------------------------------------------------------------------------------------
def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 5)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == 0:  # stripes
        a = rng.uniform(0, math.pi)
        f = rng.uniform(0.1, 0.5)
        t = 0.5 + 0.5 * np.sin(f * (xx * math.cos(a) + yy * math.sin(a)))
    elif kind == 1:  # checker
        s = rng.integers(4, 14)
        t = (((xx // s) + (yy // s)) % 2).astype(np.float64)
    elif kind == 2:  # smooth noise
        g = rng.random((6, 6))
        t = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC), np.float64) / 255
    elif kind == 3:  # dots
        s = rng.integers(6, 14)
        t = ((np.hypot((xx % s) - s / 2, (yy % s) - s / 2)) < s / 3.5).astype(np.float64)
    else:  # fine grain
        g = rng.random((n // 4, n // 4))
        t = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((n, n), Image.NEAREST), np.float64) / 255
    t = t[..., None]
    img = c1 * (1 - t) + c2 * t + rng.normal(0, 6, (n, n, 3))
    return np.clip(img, 0, 255)


def _shape_mask(rng: np.random.Generator, cls: str, n: int) -> tuple[np.ndarray, list]:
    """The shape's mask and its keypoints (the polygon's vertices; a circle's centre), in PIL's drawing
    coordinates (pixel centres at integers, as COCO's keypoints)."""
    size = rng.uniform(0.3, 0.55) * n
    cx, cy = rng.uniform(size / 2 + 4, n - size / 2 - 4, 2)
    rot = rng.uniform(0, 2 * math.pi)
    im = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(im)
    half = size / 2
    if cls == "circle":
        d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
        vertices = [(cx, cy)]
    else:
        if cls == "square":
            pts = [(half * 0.9 * math.cos(rot + k * math.pi / 2 + math.pi / 4) * math.sqrt(2) * 0.8,
                    half * 0.9 * math.sin(rot + k * math.pi / 2 + math.pi / 4) * math.sqrt(2) * 0.8) for k in range(4)]
        elif cls == "triangle":
            pts = [(half * math.cos(rot + k * 2 * math.pi / 3), half * math.sin(rot + k * 2 * math.pi / 3))
                   for k in range(3)]
        else:  # star
            pts = [((half if k % 2 == 0 else half * 0.45) * math.cos(rot + k * math.pi / 5),
                    (half if k % 2 == 0 else half * 0.45) * math.sin(rot + k * math.pi / 5)) for k in range(10)]
        vertices = [(cx + x, cy + y) for x, y in pts]
        d.polygon(vertices, fill=255)
    return np.asarray(im) > 127, vertices


def _shape_image(rng: np.random.Generator, cls: str, n: int = SHAPE_SIZE):
    bg = _texture(rng, n)
    fg = _texture(rng, n)
    mask, vertices = _shape_mask(rng, cls, n)
    img = np.where(mask[..., None], fg, bg).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return img, box, mask, vertices


def shape_jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build(dest, seed: int = 0, per_class: int = PER_CLASS) -> Path:
    """Write the sample dataset under ``dest`` (wafers/ and shapes/, each with its COCO ``annotations.json``).
    Deterministic for a seed."""
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    wafers = _coco([{"name": c} for c in WAFER_CLASSES])
    for cls in WAFER_CLASSES:
        (dest / "wafers" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rel = f"{cls}/{cls.lower()}_{i:03d}.png"
            arr, region = _wafer(rng, cls)
            atomic_write_bytes(dest / "wafers" / rel, wafer_png(arr))
            _annotate(wafers, rel, WAFER_SIZE, WAFER_CLASSES.index(cls), region)
    boxes = {}
    shapes = _coco([{"name": c, "keypoints": [f"vertex {k + 1}" for k in range(SHAPE_VERTICES[c])]}
                    for c in SHAPE_CLASSES])
    for cls in SHAPE_CLASSES:
        (dest / "shapes" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img, box, mask, vertices = _shape_image(rng, cls)
            rel = f"{cls}/{cls}_{i:03d}.jpg"
            atomic_write_bytes(dest / "shapes" / rel, shape_jpeg(img))
            boxes[rel] = box
            _annotate(shapes, rel, SHAPE_SIZE, SHAPE_CLASSES.index(cls), mask, vertices)
    atomic_write_bytes(dest / "shapes" / "boxes.json", (json.dumps(boxes, indent=1, sort_keys=True) + "\n").encode())
    for name, doc in (("wafers", wafers), ("shapes", shapes)):
        atomic_write_bytes(dest / name / "annotations.json", (json.dumps(doc, separators=(",", ":")) + "\n").encode())
    return dest


SHAPE_VERTICES = {"circle": 1, "square": 4, "triangle": 3, "star": 10}


def _coco(categories: list[dict]) -> dict:
    return {"info": {"description": "augstudio sample targets (io/samples.py)"}, "images": [], "annotations": [],
            "categories": [{"id": k + 1, **c} for k, c in enumerate(categories)]}


def _annotate(doc: dict, rel: str, n: int, label: int, region, vertices=None) -> None:
    """One image and, where it has a region, one annotation: box, RLE mask, keypoints (COCO: pixel indices)."""
    from .targets import rle  # deferred: the targets package loads torch

    image_id = len(doc["images"]) + 1
    doc["images"].append({"id": image_id, "file_name": rel, "width": n, "height": n})
    if region is None or not region.any():
        return
    ys, xs = np.nonzero(region)
    x0, y0 = int(xs.min()), int(ys.min())
    ann = {"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": label + 1,
           "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], "area": int(region.sum()), "iscrowd": 0,
           "segmentation": rle.encode(region.astype(np.uint8))}
    if vertices is not None:
        ann["keypoints"] = [v for x, y in vertices for v in (round(x, 2), round(y, 2), 2)]
        ann["num_keypoints"] = len(vertices)
    doc["annotations"].append(ann)


def load_boxes(shapes_root) -> dict[str, list[int]]:
    return json.loads((Path(shapes_root) / "boxes.json").read_text())


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[3] / "resources" / "samples"
    build(out)
    print(f"wrote the sample dataset to {out}")
