"""The TTA recipe: which deterministic views of each image a classifier sees, and how their class
probabilities merge (see ``tta`` for the predictions and the evaluation).

TTA recipe file (YAML or JSON)::

    augstudio_tta: 1
    views: d4                 # a preset name, or a list of views (below)
    merge: mean               # mean | gmean | max | vote | sharpen
    temperature: 0.5          # only for merge: sharpen

Views (each entry of the ``views`` list; a preset name inside the list is expanded in place):

=========================  =========================================================================
``identity``               the image as it is
``hflip`` / ``vflip``      mirror left-right / top-bottom
``transpose``              swap rows and columns (mirror about the main diagonal)
``{rot90: k}``             rotate by k x 90 degrees counter-clockwise (k = 1, 2, 3)
``d4``                     the 8 symmetries of the square: rot90 k = 0..3, each with and without hflip
``flips``                  identity, hflip, vflip (a preset; also ``mirror``: identity, hflip;
                           ``rotations``: rot90 k = 0..3; ``identity`` alone as ``views:`` means no TTA)
``{five_crop: S}``         4 corner crops + the centre crop of size S
``{ten_crop: S}``          the five crops and their mirror images (AlexNet / ResNet 10-crop testing)
``{center_crop: S}``       the centre crop only
``{scales: [s, ...]}``     zoom about the centre by each factor, keeping the image size: s > 1 zooms in
                           (the centre is enlarged and the border cropped), s < 1 zooms out (the image
                           is shrunk and the border filled with 0)
=========================  =========================================================================

A crop size ``S`` is a whole number of pixels (``224``), ``[h, w]`` in pixels, or a fraction of each side
(``0.875``); a crop larger than the image is clipped to the image. Categorical pictures (wafer maps) use
nearest resampling, so their values never change. Every view is exact and deterministic: no randomness.

Merge rules over the views' softmax probabilities ``p_v`` (V views):

* ``mean``: ``(1/V) sum p_v`` (the 10-crop rule: average the class scores);
* ``gmean``: geometric mean ``exp((1/V) sum log p_v)``, renormalised to sum 1;
* ``max``: per-class maximum over the views, renormalised;
* ``vote``: fraction of views whose top class is c (majority vote; ties go to the higher mean probability);
* ``sharpen``: the mean, sharpened with a temperature T (MixMatch): ``m^(1/T) / sum m^(1/T)``; T < 1
  makes confident labels more confident.

The evaluation (``evaluate_job``) reports accuracy without TTA (the plain image, one forward pass) and with
it, per class, both confusion matrices, and which images TTA fixed or broke.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.recipe import _read_text, parse_text
from augstudio.core.io.images import Picture, atomic_write_bytes

SCHEMA_VERSION = 1
MERGES = ("mean", "gmean", "max", "vote", "sharpen")
SIMPLE_VIEWS = ("identity", "hflip", "vflip", "transpose")
PARAM_VIEWS = ("rot90", "five_crop", "ten_crop", "center_crop", "scales")
PRESETS = {
    "identity": ["identity"],
    "flips": ["identity", "hflip", "vflip"],
    "mirror": ["identity", "hflip"],
    "rotations": ["identity", {"rot90": 1}, {"rot90": 2}, {"rot90": 3}],
    "d4": ["identity", {"rot90": 1}, {"rot90": 2}, {"rot90": 3},
           "hflip", ["hflip", {"rot90": 1}], ["hflip", {"rot90": 2}], ["hflip", {"rot90": 3}]],
}
PRESET_HELP = {
    "identity": "no TTA (one view)",
    "flips": "identity, hflip, vflip",
    "mirror": "identity and its mirror image (hflip)",
    "rotations": "the 4 rotations by 90 degrees",
    "d4": "the 8 symmetries of the square (wafer maps, microscopy, satellite images)",
}


# -- views ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """One deterministic view: a sequence of primitive steps ``(kind, arg)`` applied in order."""

    name: str
    steps: tuple = ()

    def apply(self, pic: Picture) -> Picture:
        x = pic.pixels
        for kind, arg in self.steps:
            x = _apply_step(x, kind, arg, pic.kind)
        return pic.with_pixels(x.contiguous())


def _crop_size(size, h: int, w: int) -> tuple[int, int]:
    if isinstance(size, float):
        return max(1, round(h * size)), max(1, round(w * size))
    if isinstance(size, int):
        return min(size, h), min(size, w)
    return min(size[0], h), min(size[1], w)


def _apply_step(x, kind: str, arg, pic_kind: str):

    if kind == "hflip":
        return x.flip(-1)
    if kind == "vflip":
        return x.flip(-2)
    if kind == "transpose":
        return x.transpose(-1, -2)
    if kind == "rot90":
        return torch.rot90(x, int(arg), dims=(-2, -1))
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if kind == "crop":  # (position, size)
        pos, size = arg
        ch, cw = _crop_size(size, h, w)
        # the centre offset rounds like torchvision's center_crop / five_crop
        top = {"tl": 0, "tr": 0, "bl": h - ch, "br": h - ch, "c": int(round((h - ch) / 2.0))}[pos]
        left = {"tl": 0, "tr": w - cw, "bl": 0, "br": w - cw, "c": int(round((w - cw) / 2.0))}[pos]
        return x[..., top:top + ch, left:left + cw]
    if kind == "zoom":

        s = float(arg)
        if s == 1.0:
            return x
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        if pic_kind == "categorical":
            y = F.resize(x, [nh, nw], interpolation=InterpolationMode.NEAREST)
        else:
            y = F.resize(x, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return F.center_crop(y, [h, w])  # crops when zoomed in, pads with 0 when zoomed out
    raise RecipeError(f"unknown TTA view step {kind!r}")


def _where(i: int) -> str:
    return f"view {i + 1}: "


def _check_crop_size(v, name: str, where: str):
    ok = False
    if isinstance(v, bool):
        ok = False
    elif isinstance(v, int):
        ok = v >= 1
    elif isinstance(v, float):
        ok = math.isfinite(v) and 0.0 < v <= 1.0
    elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(a, int) and not isinstance(a, bool)
                                                               and a >= 1 for a in v):
        ok = True
        v = [int(v[0]), int(v[1])]
    if not ok:
        raise RecipeError(f"{where}'{name}' needs a crop size: whole pixels (224), [height, width] in pixels, "
                          f"or a fraction of each side in (0, 1] (0.875); got {v!r}")
    return v


def _parse_primitive(entry, where: str) -> list[View]:
    """One entry of ``views`` -> one or more Views."""
    if isinstance(entry, str):
        if entry in SIMPLE_VIEWS:
            return [View(entry, () if entry == "identity" else ((entry, None),))]
        if entry in PRESETS:
            return [v for e in PRESETS[entry] for v in _parse_primitive(e, where)]
        if entry in PARAM_VIEWS:
            raise RecipeError(f"{where}'{entry}' needs a value, e.g. {{{entry}: {_EXAMPLE[entry]}}}")
        raise RecipeError(f"{where}unknown view {entry!r}; known views: {', '.join(SIMPLE_VIEWS + PARAM_VIEWS)}; "
                          f"presets: {', '.join(PRESETS)}")
    if isinstance(entry, list):  # a composition, applied left to right: [hflip, {rot90: 1}]
        if not entry:
            raise RecipeError(f"{where}an empty list is not a view; write identity")
        steps: list = []
        names = []
        for part in entry:
            sub = _parse_primitive(part, where)
            if len(sub) != 1:
                raise RecipeError(f"{where}{part!r} makes {len(sub)} views and cannot be part of a composition")
            steps.extend(sub[0].steps)
            names.append(sub[0].name)
        names = [n for n in names if n != "identity"] or ["identity"]
        return [View("+".join(names), tuple(steps))]
    if not isinstance(entry, dict) or len(entry) != 1:
        raise RecipeError(f"{where}a view is a name (hflip), a mapping with one key ({{rot90: 1}}) or a list "
                          f"(composition); got {entry!r}")
    (key, val), = entry.items()
    if key not in PARAM_VIEWS:
        raise RecipeError(f"{where}unknown view {key!r}; views with a value: {', '.join(PARAM_VIEWS)}")
    if key == "rot90":
        if isinstance(val, bool) or not isinstance(val, int) or val not in (0, 1, 2, 3):
            raise RecipeError(f"{where}'rot90' needs a whole number of quarter turns 1, 2 or 3, got {val!r}")
        k = val % 4
        return [View(f"rot90:{k}" if k else "identity", (("rot90", k),) if k else ())]
    if key in ("five_crop", "ten_crop", "center_crop"):
        size = _check_crop_size(val, key, where)
        tag = f"{size[0]}x{size[1]}" if isinstance(size, list) else str(size)
        positions = ("c",) if key == "center_crop" else ("tl", "tr", "bl", "br", "c")
        names = {"tl": "top-left", "tr": "top-right", "bl": "bottom-left", "br": "bottom-right", "c": "center"}
        views = [View(f"crop:{names[p]}@{tag}", (("crop", (p, size)),)) for p in positions]
        if key == "ten_crop":
            # like torchvision's ten_crop: mirror the image, then take the five crops
            views += [View(f"hflip+crop:{names[p]}@{tag}", (("hflip", None), ("crop", (p, size))))
                      for p in positions]
        return views
    # scales
    vals = val if isinstance(val, (list, tuple)) else [val]
    if not vals:
        raise RecipeError(f"{where}'scales' needs at least one factor, e.g. {{scales: [0.9, 1.0, 1.1]}}")
    out = []
    for s in vals:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0.1 <= s <= 10:
            raise RecipeError(f"{where}'scales' factors must be numbers within 0.1 .. 10, got {s!r}")
        s = float(s)
        out.append(View("identity" if s == 1.0 else f"zoom:{s:g}", () if s == 1.0 else (("zoom", s),)))
    return out


_EXAMPLE = {"rot90": 1, "five_crop": 0.875, "ten_crop": 0.875, "center_crop": 0.875, "scales": "[0.9, 1.0, 1.1]"}


# -- the TTA recipe -----------------------------------------------------------------------------------------
@dataclass
class TTARecipe:
    views_spec: Any = "d4"  # what the file said (a preset name or a list), kept for saving
    merge: str = "mean"
    temperature: float = 0.5
    views: list[View] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self):
        if not self.views:
            self.views = parse_views(self.views_spec, f"{self.source}: " if self.source else "")

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> TTARecipe:
        where = f"{source}: " if source else ""
        if isinstance(data, str):  # a bare preset name
            data = {"views": data}
        if not isinstance(data, dict):
            raise RecipeError(f"{where}a TTA recipe is a mapping like {{augstudio_tta: 1, views: d4, merge: mean}}, "
                              f"got {type(data).__name__}")
        version = data.get("augstudio_tta", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RecipeError(f"{where}'augstudio_tta' must be the schema version number {SCHEMA_VERSION}, got {version!r}")
        if version > SCHEMA_VERSION:
            raise RecipeError(f"{where}TTA recipe version {version} is newer than this augstudio understands "
                              f"({SCHEMA_VERSION}); upgrade augstudio")
        unknown = sorted(set(data) - {"augstudio_tta", "views", "merge", "temperature"})
        if unknown:
            raise RecipeError(f"{where}unknown key(s) {', '.join(map(str, unknown))}; a TTA recipe has augstudio_tta, "
                              "views, merge and temperature")
        if "views" not in data:
            raise RecipeError(f"{where}no 'views': give a preset ({', '.join(PRESETS)}) or a list such as "
                              "[identity, hflip, {rot90: 1}]")
        merge = data.get("merge", "mean")
        if merge not in MERGES:
            raise RecipeError(f"{where}'merge' must be one of {', '.join(MERGES)}, got {merge!r}")
        t = data.get("temperature", 0.5)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.01 <= t <= 100:
            raise RecipeError(f"{where}'temperature' must be a number within 0.01 .. 100 (below 1 sharpens), got {t!r}")
        views = parse_views(data["views"], where)
        return cls(data["views"], merge, float(t), views, source)

    def to_dict(self) -> dict:
        d = {"augstudio_tta": SCHEMA_VERSION, "views": self.views_spec, "merge": self.merge}
        if self.merge == "sharpen":
            d["temperature"] = self.temperature
        return d

    def dumps(self, fmt: str = "yaml") -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path) -> None:
        path = Path(path)
        atomic_write_bytes(path, self.dumps("json" if path.suffix.lower() == ".json" else "yaml").encode())

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.views]


def parse_views(spec: Any, where: str = "") -> list[View]:
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise RecipeError(f"{where}unknown TTA preset {spec!r}; presets: {', '.join(PRESETS)} "
                              "(or give a list of views)")
        spec = PRESETS[spec]
    if not isinstance(spec, (list, tuple)) or not spec:
        raise RecipeError(f"{where}'views' must be a preset name or a non-empty list of views, got {spec!r}")
    views: list[View] = []
    for i, entry in enumerate(spec):
        views.extend(_parse_primitive(entry, f"{where}{_where(i)}"))
    if len(views) > 256:
        raise RecipeError(f"{where}{len(views)} views is too many (at most 256)")
    return views


def load_tta(source) -> TTARecipe:
    """A TTARecipe from a path (.yaml/.json), a preset name ('d4'), a dict, or a TTARecipe."""
    if source is None:
        return TTARecipe()
    if isinstance(source, TTARecipe):
        return source
    if isinstance(source, dict):
        return TTARecipe.from_dict(source)
    if isinstance(source, str) and source in PRESETS:
        return TTARecipe.from_dict({"views": source})
    path = Path(source)
    if not path.exists() and isinstance(source, str) and "/" not in source and "." not in source:
        raise RecipeError(f"{source!r} is neither a TTA preset ({', '.join(PRESETS)}) nor an existing file")
    data = parse_text(_read_text(path), str(path))
    return TTARecipe.from_dict(data, str(path))
