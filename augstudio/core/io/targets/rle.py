"""COCO masks without pycocotools: run-length encoding, polygon rasterisation, area and bounding box.

* RLE is COCO's: runs over the mask read **column-major** (down the first column, then the next), starting
  with a run of zeros (0 when the first pixel is set), as ``{"size": [h, w], "counts": ...}``. ``counts``
  is either a list of ints (uncompressed, as COCO's crowd annotations are stored) or COCO's compressed
  string (pycocotools' ``rleToString``: each count, from the fourth on as the difference to the count two
  before, in 5-bit groups with a continuation bit, offset by 48 into printable ASCII). Both are read;
  ``encode`` writes the compressed string (what ``pycocotools.mask.encode`` makes).
* Polygons ``[x1, y1, x2, y2, ...]`` are in the pixel-edge frame of the targets contract (a pixel
  ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``); a pixel belongs to a polygon when its centre
  ``(c + 0.5, r + 0.5)`` lies inside (even-odd rule; a centre on a left or top edge is inside, on a right or
  bottom edge outside). Several polygons of one object are united. pycocotools rasterises on a 5x
  upsampled boundary instead, so the two agree on most pixels but not on every boundary pixel.
"""

from __future__ import annotations

import math

import numpy as np

from augstudio.core.base.errors import DatasetError


def encode_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a binary ``H x W`` mask, starting with the zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return [int(c) for c in counts]


def decode_counts(counts, size: tuple[int, int]) -> np.ndarray:
    """Binary ``H x W`` uint8 mask from column-major run lengths; raises ValueError if they do not fit."""
    h, w = size
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and int(counts.min()) < 0:
        raise ValueError("negative run length")
    if int(counts.sum()) != h * w:
        raise ValueError(f"run lengths add up to {int(counts.sum())} pixels, the mask has {h} x {w} = {h * w}")
    values = (np.arange(counts.size) % 2).astype(np.uint8)
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def counts_to_string(counts: list[int]) -> str:
    """pycocotools' ``rleToString``: LEB128-like, 5 bits a character, deltas from the fourth count on."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """pycocotools' ``rleFrString``; raises ValueError on characters outside the code."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("the compressed counts end in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {s[p]!r} at {p} is not in COCO's compressed RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask) -> dict:
    """COCO RLE of a binary ``H x W`` mask with compressed string counts (as ``pycocotools.mask.encode``)."""
    m = np.asarray(mask)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(encode_counts(m))}


def rle_counts(rle: dict) -> list[int]:
    """The run lengths of an RLE dict whose counts are a list or a compressed string (str or bytes)."""
    counts = rle.get("counts")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        return string_to_counts(counts)
    if isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return list(counts)
    raise ValueError("RLE counts must be a list of whole numbers or COCO's compressed string")


def decode(rle: dict) -> np.ndarray:
    """Binary ``H x W`` uint8 mask from a COCO RLE dict (compressed or uncompressed counts)."""
    size = rle.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError(f"RLE size must be [height, width], got {size!r}")
    return decode_counts(rle_counts(rle), (size[0], size[1]))


def area(rle: dict) -> int:
    """Set pixels of an RLE (as ``pycocotools.mask.area``)."""
    return int(sum(rle_counts(rle)[1::2]))


def mask_bbox(mask) -> list[float]:
    """``[x, y, w, h]`` of the set pixels in the pixel-edge frame (as ``pycocotools.mask.toBbox``; zeros if
    the mask is empty)."""
    m = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(m.any(axis=0))
    rows = np.flatnonzero(m.any(axis=1))
    if cols.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def check_polygon(poly) -> str | None:
    """Why ``poly`` (flat ``[x1, y1, ...]``) is not a usable polygon, or None."""
    if not isinstance(poly, (list, tuple)):
        return f"a polygon must be a list of numbers, got {type(poly).__name__}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
        return "a polygon holds something other than numbers"
    if len(poly) % 2:
        return f"a polygon has an odd count of coordinates ({len(poly)}); they come in x, y pairs"
    if len(poly) < 6:
        return f"a polygon has {len(poly) // 2} point(s); at least 3 are needed"
    if not all(math.isfinite(v) for v in poly):
        return "a polygon has a coordinate that is not a finite number"
    return None


def rasterize_polygons(polygons, size: tuple[int, int]) -> np.ndarray:
    """Binary ``H x W`` uint8 mask: the union of the polygons, each filled by the even-odd rule at pixel
    centres (pixel-edge frame; see the module docstring)."""
    h, w = size
    out = np.zeros((h, w), dtype=np.uint8)
    for poly in polygons:
        why = check_polygon(poly)
        if why:
            raise DatasetError(why)
        out |= _fill(np.asarray(poly, dtype=np.float64).reshape(-1, 2), h, w)
    return out


def _fill(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    r_lo = max(0, int(math.floor(float(pts[:, 1].min()) - 0.5)))
    r_hi = min(h, int(math.ceil(float(pts[:, 1].max()) + 0.5)))
    if r_hi <= r_lo:
        return mask
    yc = np.arange(r_lo, r_hi, dtype=np.float64)[:, None] + 0.5  # rows x 1
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    crosses = (yc >= lo) & (yc < hi)  # half-open: a vertex on the scan line counts once
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (yc - y0) / (y1 - y0)
        xs = np.where(crosses, x0 + t * (x1 - x0), np.inf)
    xs.sort(axis=1)
    n = crosses.sum(axis=1)
    diff = np.zeros((r_hi - r_lo, w + 1), dtype=np.int32)
    for j in range(0, int(n.max(initial=0)), 2):
        rows = np.flatnonzero(n > j + 1)
        if rows.size == 0:
            break
        a, b = xs[rows, j], xs[rows, j + 1]
        # columns c with a <= c + 0.5 < b
        start = np.clip(np.ceil(a - 0.5), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(b - 0.5), 0, w).astype(np.int64)
        keep = stop > start
        np.add.at(diff, (rows[keep], start[keep]), 1)
        np.add.at(diff, (rows[keep], stop[keep]), -1)
    mask[r_lo:r_hi] = (np.cumsum(diff[:, :w], axis=1) > 0).astype(np.uint8)
    return mask


def segmentation_to_mask(seg, size: tuple[int, int]) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, or RLE dict) as a binary ``H x W`` uint8 mask."""
    if isinstance(seg, dict):
        m = decode(seg)
        if m.shape != tuple(size):
            raise ValueError(f"RLE size {list(m.shape)} differs from the image size {list(size)}")
        return m
    return rasterize_polygons(seg, size)


def check_segmentation(seg, size: tuple[int, int]) -> str | None:
    """Why a COCO ``segmentation`` cannot be used for an image of ``size`` (cheap: nothing rasterised)."""
    if isinstance(seg, dict):
        rsize = seg.get("size")
        if not (isinstance(rsize, list) and len(rsize) == 2):
            return f"RLE size must be [height, width], got {rsize!r}"
        if list(rsize) != list(size):
            return f"RLE size {rsize} differs from the image size {list(size)} (height, width)"
        try:
            counts = rle_counts(seg)
        except ValueError as e:
            return f"RLE counts unreadable: {e}"
        total = sum(counts)
        if total != size[0] * size[1] or (counts and min(counts) < 0):
            return f"RLE run lengths add up to {total} pixels, the image has {size[0] * size[1]}"
        return None
    if not isinstance(seg, list):
        return f"segmentation must be a list of polygons or an RLE dict, got {type(seg).__name__}"
    for poly in seg:
        why = check_polygon(poly)
        if why:
            return why
    return None


__all__ = ["encode", "decode", "area", "mask_bbox", "encode_counts", "decode_counts", "counts_to_string",
           "string_to_counts", "rle_counts", "rasterize_polygons", "segmentation_to_mask", "check_polygon",
           "check_segmentation"]
