"""The bundled sample dataset, built deterministically (``python -m augstudio.core.samples``).

* ``wafers/``: 64x64 palette PNGs of semiconductor wafer maps with three values (0 off-wafer, 1 pass die,
  2 fail die), in nine classes named like the WM-811K defect patterns, drawn procedurally with random
  placement and noise.
* ``shapes/``: 128x128 RGB JPEGs of four shape classes (circle, square, triangle, star), each shape filled
  with a random procedural texture on another textured background: shape is the label, texture the
  nuisance (the Stylized-ImageNet story). ``shapes/boxes.json`` holds each object's bounding box
  ``[x0, y0, x1, y1]`` (pixels, x1/y1 exclusive) for measuring saliency localisation.

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
def _wafer(rng: np.random.Generator, cls: str, n: int = WAFER_SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    c = (n - 1) / 2
    radius = n / 2 - 2
    r = np.hypot(yy - c, xx - c)
    theta = np.arctan2(yy - c, xx - c)
    on = r <= radius
    fail = rng.random((n, n)) < rng.uniform(0.01, 0.05)  # background defects
    if cls == "Center":
        cy, cx = c + rng.normal(0, 2, 2)
        rad = rng.uniform(5, 11)
        fail |= (np.hypot(yy - cy, xx - cx) < rad) & (rng.random((n, n)) < 0.9)
    elif cls == "Donut":
        r0 = rng.uniform(9, 17)
        w = rng.uniform(3, 6)
        fail |= (np.abs(r - r0) < w / 2) & (rng.random((n, n)) < 0.85)
    elif cls == "Edge-Loc":
        a = rng.uniform(-math.pi, math.pi)
        ey, ex = c + (radius - 3) * math.sin(a), c + (radius - 3) * math.cos(a)
        fail |= (np.hypot(yy - ey, xx - ex) < rng.uniform(5, 9)) & (rng.random((n, n)) < 0.85)
    elif cls == "Edge-Ring":
        w = rng.uniform(2, 4)
        fail |= (r > radius - w) & (rng.random((n, n)) < 0.85)
    elif cls == "Loc":
        rr = rng.uniform(8, radius - 10)
        a = rng.uniform(-math.pi, math.pi)
        ly, lx = c + rr * math.sin(a), c + rr * math.cos(a)
        fail |= (np.hypot(yy - ly, xx - lx) < rng.uniform(3.5, 7)) & (rng.random((n, n)) < 0.9)
    elif cls == "Near-full":
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
        fail |= (np.abs(d + bend * along**2) < 1.0) & (np.abs(along - start) < half)
    elif cls == "none":
        pass
    _ = theta
    m = np.zeros((n, n), np.uint8)
    m[on] = 1
    m[on & fail] = 2
    return m


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


def _shape_mask(rng: np.random.Generator, cls: str, n: int) -> np.ndarray:
    size = rng.uniform(0.3, 0.55) * n
    cx, cy = rng.uniform(size / 2 + 4, n - size / 2 - 4, 2)
    rot = rng.uniform(0, 2 * math.pi)
    im = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(im)
    half = size / 2
    if cls == "circle":
        d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
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
        d.polygon([(cx + x, cy + y) for x, y in pts], fill=255)
    return np.asarray(im) > 127


def _shape_image(rng: np.random.Generator, cls: str, n: int = SHAPE_SIZE):
    bg = _texture(rng, n)
    fg = _texture(rng, n)
    mask = _shape_mask(rng, cls, n)
    img = np.where(mask[..., None], fg, bg).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return img, box


def shape_jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build(dest, seed: int = 0, per_class: int = PER_CLASS) -> Path:
    """Write the sample dataset under ``dest`` (wafers/ and shapes/). Deterministic for a seed."""
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    for cls in WAFER_CLASSES:
        (dest / "wafers" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            atomic_write_bytes(dest / "wafers" / cls / f"{cls.lower()}_{i:03d}.png", wafer_png(_wafer(rng, cls)))
    boxes = {}
    for cls in SHAPE_CLASSES:
        (dest / "shapes" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img, box = _shape_image(rng, cls)
            rel = f"{cls}/{cls}_{i:03d}.jpg"
            atomic_write_bytes(dest / "shapes" / rel, shape_jpeg(img))
            boxes[rel] = box
    atomic_write_bytes(dest / "shapes" / "boxes.json", (json.dumps(boxes, indent=1, sort_keys=True) + "\n").encode())
    return dest


def load_boxes(shapes_root) -> dict[str, list[int]]:
    return json.loads((Path(shapes_root) / "boxes.json").read_text())


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[3] / "resources" / "samples"
    build(out)
    print(f"wrote the sample dataset to {out}")
