"""The in-memory form of a dataset with targets, and the small helpers every format shares.

A ``TargetDataset`` is what a reader returns: the root, the format name, the class list (labels in the
targets index into it), the items, the problems met while reading (each bad item is reported and skipped),
and ``meta``: what a writer needs to write the same format back (COCO's info, licences and categories with
their ids and keypoint names; where the annotation file and images were; ...).

A ``TargetItem`` holds one image: its path relative to the root (forward slashes; the item's seed key),
its size ``(h, w)``, ``extras`` (the per-item things a writer needs: COCO image and annotation ids,
iscrowd, keypoint grouping; VOC flags; ...) and its targets in the canonical form of
``augstudio.core.base.targets``. Boxes and keypoints are held in memory; masks are decoded from their
file or polygons each time ``item.targets`` is read (a COCO dataset's masks do not fit in memory at once).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from augstudio.core.base.errors import AugstudioError, DatasetError, ImageError
from augstudio.core.base.targets import IGNORE_INDEX, normalize_targets

from ..dataset import Problem
from ..images import IMAGE_EXTENSIONS, load_pil, read_header
from ..outputs import check_output_folder, safe_rel


class TargetItem:
    """One image and its targets. ``targets`` is either given, or made by ``load()`` on each access."""

    __slots__ = ("image", "size", "extras", "_targets", "_load")

    def __init__(self, image: str, size: tuple[int, int], targets: dict | None = None,
                 extras: dict | None = None, load: Callable[[], dict] | None = None):
        self.image = image
        self.size = (int(size[0]), int(size[1]))
        self.extras = extras if extras is not None else {}
        self._targets = targets
        self._load = load

    @property
    def targets(self) -> dict:
        """The canonical targets dict (CPU tensors), a fresh copy on each access (change it freely); masks are
        decoded on each access unless ``cache()`` kept them."""
        if self._load is not None:
            return self._load()
        return {k: v.clone() for k, v in (self._targets or {}).items()}

    def cache(self) -> None:
        """Decode once and keep the result (small datasets, tests)."""
        if self._load is not None:
            self._targets, self._load = self._load(), None

    def __repr__(self) -> str:
        return f"TargetItem({self.image!r}, size={self.size})"


@dataclass
class TargetDataset:
    root: Path
    format: str
    classes: list[str]
    items: list[TargetItem]
    problems: list[Problem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def abspath(self, item: TargetItem | str) -> Path:
        return self.root / (item.image if isinstance(item, TargetItem) else item)

    def entries(self):
        """``(image, size, targets, extras)`` per item: what ``write_targets`` takes (an identity export)."""
        for it in self.items:
            yield it.image, it.size, it.targets, it.extras


def canonical(targets: dict, size: tuple[int, int], where) -> dict:
    """``normalize_targets`` on the CPU, its RecipeError turned into a DatasetError naming ``where``."""
    try:
        return normalize_targets(targets, size, device="cpu")
    except AugstudioError as e:
        raise DatasetError(f"{where}: {e}") from None


def empty_boxes() -> dict:
    return {"boxes": torch.zeros((0, 4), dtype=torch.float32), "box_labels": torch.zeros(0, dtype=torch.int64)}


def check_root(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder; open the dataset folder")
    return root


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def image_size(path: Path) -> tuple[int, int]:
    """(h, w) of an image as augstudio decodes it (EXIF orientation applied), from its header; raises
    ImageError."""
    w, h, _mode = read_header(path)
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)  # metadata only, no pixels decoded
    except Exception:
        orientation = 1
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None


def read_class_list(path: Path) -> list[str]:
    """One class name a line (blank lines at the end ignored); a duplicate name is an error."""
    names = [ln.strip() for ln in read_lines(path)]
    while names and not names[-1]:
        names.pop()
    if any(not n for n in names):
        raise DatasetError(f"{path}: line {names.index('') + 1} is empty; write one class name a line")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path}: class name(s) {dup} appear more than once")
    return names


def check_label_range(labels, n_classes: int, what: str) -> str | None:
    bad = [int(v) for v in labels if not 0 <= int(v) < n_classes]
    if bad:
        return (f"{what} {bad[0]} is out of range: the dataset has {n_classes} classes (0..{n_classes - 1})"
                if n_classes else f"{what} {bad[0]} but the dataset names no classes")
    return None


def load_mask_png(path: Path, size: tuple[int, int], n_classes: int | None) -> torch.Tensor:
    """A categorical mask file (L or P mode: pixel value = class index) as ``H x W`` int64. Values must be
    class indices or IGNORE_INDEX (255) when ``n_classes`` is known."""
    try:
        im = load_pil(path)
    except ImageError as e:
        raise DatasetError(str(e)) from None
    if im.mode not in ("L", "P", "1", "I;16", "I"):
        raise DatasetError(f"{path}: a mask must be a single-channel image (L or P mode: pixel value = class "
                           f"index), got mode {im.mode}")
    arr = np.asarray(im if im.mode != "1" else im.convert("L"), dtype=np.int64)
    if im.mode == "1":
        arr = (arr > 0).astype(np.int64)
    if arr.shape != tuple(size):
        raise DatasetError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, its image is {size[1]}x{size[0]}")
    if n_classes:
        vals = np.unique(arr)
        bad = [int(v) for v in vals if v >= n_classes and v != IGNORE_INDEX]
        if bad:
            raise DatasetError(f"{path}: mask value {bad[0]} is out of range: the dataset has {n_classes} "
                               f"classes (0..{n_classes - 1}; {IGNORE_INDEX} = ignore)")
    return torch.from_numpy(arr)


def mask_png_bytes(mask: torch.Tensor, palette: list[int] | None, where) -> bytes:
    """A categorical ``H x W`` mask as PNG bytes: P mode with ``palette`` when one is given, else L."""
    m = mask.detach().to("cpu")
    if m.dim() != 2:
        raise DatasetError(f"{where}: a mask file holds one categorical H x W mask, got shape {tuple(m.shape)} "
                           "(instance masks are written by the COCO format only)")
    if m.numel() and (int(m.min()) < 0 or int(m.max()) > 255):
        raise DatasetError(f"{where}: mask values must be 0..255 to be written as PNG, got "
                           f"{int(m.min())}..{int(m.max())}")
    arr = m.to(torch.uint8).numpy()
    im = Image.fromarray(arr, mode="P" if palette else "L")
    if palette:
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def per_box(extras: dict, key: str, n: int, default) -> list:
    """The per-box list ``extras[key]`` for the ``n`` boxes being written. When ops dropped boxes, the
    caller passes ``extras["box_index"]``: the source box of each box written; the list is indexed through
    it. Otherwise a list of length ``n`` is taken as it is, and anything else gives ``[default] * n``."""
    v, idx = extras.get(key), extras.get("box_index")
    if isinstance(v, list) and isinstance(idx, list) and len(idx) == n \
            and all(isinstance(i, int) and 0 <= i < len(v) for i in idx):
        return [v[i] for i in idx]
    return list(v) if isinstance(v, list) and len(v) == n and idx is None else [default] * n


def num(v: float) -> str:
    """Shortest text that reads back as the same float32 (an int when whole)."""
    f = float(v)
    if f.is_integer() and abs(f) < 2**53:
        return str(int(f))
    return np.format_float_positional(np.float32(f), unique=True, trim="-")


def json_num(v: float):
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def f32(v) -> float:
    return float(np.float32(v))


def finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def prepare_output(root: Path, out_root) -> Path:
    """Refuse an output inside (or around) the source dataset; create it."""
    out = check_output_folder(root, Path(out_root), "source dataset")
    out.mkdir(parents=True, exist_ok=True)
    return out


def out_path(out: Path, rel_path: str) -> Path:
    p = out / safe_rel(rel_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def swap_top(rel_path: str, old: str, new: str, suffix: str) -> str | None:
    """``old/a/b.jpg`` -> ``new/a/b<suffix>`` (the last ``old`` folder in the path), or None."""
    parts = list(PurePosixPath(rel_path).parts)
    if old not in parts[:-1]:
        return None
    i = len(parts) - 2 - parts[:-1][::-1].index(old)
    parts[i] = new
    return str(PurePosixPath(*parts).with_suffix(suffix))


__all__ = ["TargetItem", "TargetDataset", "Problem", "canonical", "empty_boxes", "check_root", "image_size",
           "list_images", "read_class_list", "check_label_range", "load_mask_png", "mask_png_bytes", "num",
           "json_num", "per_box", "prepare_output", "out_path", "swap_top"]
