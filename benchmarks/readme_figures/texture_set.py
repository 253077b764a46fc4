"""A second localisation set, made differently from the bundled shapes: four object classes (a horse
silhouette from ``skimage.data.horse``, a ring, a cross, a crescent), each filled with a crop of a colour
photo from ``skimage.data`` (coffee, chelsea, rocket, astronaut, immunohistochemistry, hubble deep field, with
its channels shuffled), rotated, scaled and pasted on a crop of a real grey texture (``brick``, ``grass``,
``gravel``, ``moon``, ``camera``) tinted with two random colours. 128x128 JPEGs (quality 90) in an ImageFolder
layout, with ``boxes.json`` (the pasted object's box, x1/y1 exclusive) as the shapes have. Nothing is
downloaded: scikit-image ships these images. Deterministic for a seed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("crescent", "cross", "horse", "ring")
SIZE = 128
BASE = 256  # side the object masks are drawn at before rotation and scaling


def _base_mask(cls: str) -> Image.Image:
    im = Image.new("L", (BASE, BASE), 0)
    d = ImageDraw.Draw(im)
    c, r = BASE / 2, BASE * 0.45
    if cls == "ring":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
        d.ellipse([c - 0.55 * r, c - 0.55 * r, c + 0.55 * r, c + 0.55 * r], fill=0)
    elif cls == "cross":
        w = 0.33 * r
        d.rectangle([c - w, c - r, c + w, c + r], fill=255)
        d.rectangle([c - r, c - w, c + r, c + w], fill=255)
    elif cls == "crescent":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
        o, r2 = 0.5 * r, 0.85 * r
        d.ellipse([c + o - r2, c - r2, c + o + r2, c + r2], fill=0)
    elif cls == "horse":
        from skimage import data

        h = ~data.horse()  # True on the horse
        ys, xs = np.nonzero(h)
        h = h[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        sil = Image.fromarray((h * 255).astype(np.uint8))
        sil.thumbnail((int(2 * r), int(2 * r)), Image.LANCZOS)
        im.paste(sil, (int(c - sil.width / 2), int(c - sil.height / 2)))
    else:
        raise ValueError(cls)
    return im


def _grey_textures() -> list[np.ndarray]:
    from skimage import data

    return [data.brick(), data.grass(), data.gravel(), data.moon(), data.camera()]


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.coffee(), data.chelsea(), data.rocket(), data.astronaut(), data.immunohistochemistry(),
            data.hubble_deep_field()]


def _crop(rng, a: np.ndarray, n: int) -> np.ndarray:
    """A random square crop of ``a`` (side 96..full), resized to n x n."""
    h, w = a.shape[:2]
    s = int(rng.integers(min(96, h, w), min(h, w) + 1))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return np.asarray(Image.fromarray(a[y:y + s, x:x + s]).resize((n, n), Image.BILINEAR))


def _background(rng, textures, n: int) -> np.ndarray:
    t = _crop(rng, textures[int(rng.integers(len(textures)))], n).astype(np.float64)[..., None] / 255
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return c1 * (1 - t) + c2 * t


def _foreground(rng, photos, n: int) -> np.ndarray:
    p = _crop(rng, photos[int(rng.integers(len(photos)))], n).astype(np.float64)
    return p[..., rng.permutation(3)]


def _object_mask(rng, base: Image.Image, n: int) -> np.ndarray:
    m = base.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR, expand=True)
    if rng.random() < 0.5:
        m = m.transpose(Image.FLIP_LEFT_RIGHT)
    m = m.crop(m.getbbox())
    side = rng.uniform(0.35, 0.6) * n
    scale = side / max(m.size)
    m = m.resize((max(4, round(m.width * scale)), max(4, round(m.height * scale))), Image.BILINEAR)
    x = int(rng.integers(2, n - m.width - 1))
    y = int(rng.integers(2, n - m.height - 1))
    canvas = Image.new("L", (n, n), 0)
    canvas.paste(m, (x, y))
    return np.asarray(canvas) > 127


def build(dest, per_class: int = 20, seed: int = 0) -> Path:
    """Write ``dest/<class>/<class>_NNN.jpg`` and ``dest/boxes.json``; returns ``dest``."""
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    textures, photos = _grey_textures(), _photos()
    bases = {c: _base_mask(c) for c in CLASSES}
    boxes = {}
    for cls in CLASSES:
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = _background(rng, textures, SIZE)
            fg = _foreground(rng, photos, SIZE)
            mask = _object_mask(rng, bases[cls], SIZE)
            img = np.where(mask[..., None], fg, bg)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            ys, xs = np.nonzero(mask)
            rel = f"{cls}/{cls}_{i:03d}.jpg"
            boxes[rel] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            buf = io.BytesIO()
            Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=90)
            (dest / rel).write_bytes(buf.getvalue())
    (dest / "boxes.json").write_text(json.dumps(boxes, indent=1, sort_keys=True) + "\n")
    return dest


if __name__ == "__main__":  # look at it: python -m benchmarks.readme_figures.texture_set OUT
    import sys

    out = build(sys.argv[1] if len(sys.argv) > 1 else "objects_on_textures")
    print(f"wrote {out} ({len(json.loads((out / 'boxes.json').read_text()))} images)")
