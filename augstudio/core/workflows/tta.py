"""Test-time augmentation (TTA): run a classifier on several deterministic views of each image and merge
the class probabilities (AlexNet's and ResNet's 10-crop testing; the dihedral group for wafer maps).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import AugstudioError, DatasetError, ImageError, ModelError, RecipeError
from augstudio.core.base.jobs import CancelToken, Progress, run_job
from augstudio.core.engine.recipe import _read_text, parse_text
from augstudio.core.io.dataset import Dataset, require_images, scan
from augstudio.core.io.images import Picture, atomic_write_bytes, read_image
from augstudio.core.models import loading as models
from augstudio.core.models.loading import model_dtype

from . import probe

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


# -- merging ----------------------------------------------------------------------------------------------
def merge_probs(p, rule: str = "mean", temperature: float = 0.5):
    """Merge per-view probabilities ``p`` (``... x V x C``) into ``... x C`` by ``rule`` (see module doc)."""

    p = p.double()
    if rule == "mean":
        return p.mean(-2)
    if rule == "gmean":
        g = torch.log(p.clamp_min(1e-12)).mean(-2)
        return torch.softmax(g, -1)  # exp(g) / sum exp(g)
    if rule == "max":
        m = p.amax(-2)
        return m / m.sum(-1, keepdim=True)
    if rule == "vote":
        c = p.shape[-1]
        top = p.argmax(-1)
        votes = torch.nn.functional.one_hot(top, c).double().mean(-2)
        # ties go to the class with the higher mean probability: a nudge far below one vote (1/V)
        best = (votes + p.mean(-2) * (1e-6 / max(1, p.shape[-2]))).argmax(-1, keepdim=True)
        # the vote fractions are the distribution; a 1e-9 bonus makes the tie-break winner its argmax
        out = votes.scatter_add(-1, best, torch.full_like(best, 1e-9, dtype=votes.dtype))
        return out / out.sum(-1, keepdim=True)
    if rule == "sharpen":
        m = p.mean(-2).clamp_min(1e-12)
        s = torch.log(m) / float(temperature)
        return torch.softmax(s, -1)
    raise RecipeError(f"unknown merge rule {rule!r}; use one of {', '.join(MERGES)}")


# -- the classifier ----------------------------------------------------------------------------------------
@dataclass
class Classifier:
    """What TTA needs from a model: the module, its class names, and how a Picture becomes its input.

    ``prepare(picture) -> float tensor C x H x W`` (normalised, resized to the model's input size if it has
    one). ``module(batch) -> logits N x num_classes``.
    """

    module: Any
    classes: list[str]
    prepare: Callable[[Picture], Any]
    device: str = "cpu"
    name: str = "model"


def classifier_from_spec(spec: str, data=None, device=None, allow_code: bool = False, on_progress=None,
                         cancel: CancelToken | None = None) -> Classifier:
    """Load ``spec`` (a checkpoint / TorchScript file / torchvision name, or ``probe``) through
    ``augstudio.core.models.loading``. ``probe`` trains (or reuses the saved) probe classifier on the labelled
    folder ``data``."""
    return run_job(load_classifier_job(spec, data, device, allow_code, cancel), on_progress)


def load_classifier_job(spec: str, data=None, device=None, allow_code: bool = False,
                        cancel: CancelToken | None = None):
    """Job form of ``classifier_from_spec`` (probe training yields its progress)."""

    device = str(resolve_device(device))
    spec = str(spec).strip()
    if not spec:
        raise ModelError("no model given: name a checkpoint file, a torchvision architecture, or probe")
    if spec == "probe":
        if data is None:
            raise ModelError("the probe classifier is trained on a labelled folder: give one (--data DIR, or "
                             "--probe-data DIR)")
        res = yield from probe.train_probe_job(data, device=device, cancel=cancel)
        lm = models.load_model(res.path, device=device)
        lm.name = f"probe ({Path(str(data)).name}, validation accuracy {res.val_accuracy:.1%})"
    else:
        yield Progress(0, 1, f"loading {spec}")
        lm = models.load_model(spec, device=device, allow_code=allow_code)
        yield Progress(1, 1, f"loaded {spec}")
    return classifier_from_loaded(lm, device)


def classifier_from_loaded(lm, device=None) -> Classifier:
    """Wrap a ``models.LoadedModel`` (module, classes, input_size, mean, std) as a Classifier."""

    device = str(getattr(lm, "device", None) or resolve_device(device))
    classes = list(lm.classes) if getattr(lm, "classes", None) else None
    if not classes:
        raise ModelError(f"{getattr(lm, 'name', 'the model')}: has no class names; save it with its classes "
                         "(models.save_checkpoint(..., classes=[...]))")

    def prepare(pic: Picture):
        return models.preprocess([pic], lm)[0]

    return Classifier(lm.module, classes, prepare, device, str(getattr(lm, "name", "model")))


def forward_probs(clf: Classifier, inputs: Sequence, batch_size: int = 64):
    """Softmax probabilities ``N x C`` for a list of prepared tensors (any mix of shapes; grouped by shape
    into batches of at most ``batch_size``)."""

    n = len(inputs)
    out = torch.empty(n, len(clf.classes), dtype=torch.float64, device="cpu")  # probabilities end on the CPU
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(inputs):
        groups.setdefault(tuple(t.shape), []).append(i)
    module = clf.module
    was_training = getattr(module, "training", False)
    if hasattr(module, "eval"):
        module.eval()
    try:
        with torch.inference_mode():
            for idx in groups.values():
                for s in range(0, len(idx), batch_size):
                    chunk = idx[s:s + batch_size]
                    x = torch.stack([inputs[i] for i in chunk]).to(clf.device, model_dtype(module))
                    logits = module(x)
                    if isinstance(logits, (tuple, list)):
                        logits = logits[0]
                    if logits.dim() != 2 or logits.shape[1] != len(clf.classes):
                        raise ModelError(f"{clf.name}: gave outputs of shape {tuple(logits.shape)} for a batch of "
                                         f"{len(chunk)}; expected {len(chunk)} x {len(clf.classes)} class scores")
                    out[chunk] = torch.softmax(logits.double().cpu(), -1)
    finally:
        if was_training and hasattr(module, "train"):
            module.train()
    return out


def predict_views(clf: Classifier, pics: Sequence[Picture], tta: TTARecipe, batch_size: int = 64):
    """``(plain N x C, views N x V x C, merged N x C)`` probabilities for pictures."""
    n, nv = len(pics), len(tta.views)
    ident = next((i for i, v in enumerate(tta.views) if not v.steps), None)  # reused as the plain pass
    plain_in = [] if ident is not None else [clf.prepare(p) for p in pics]
    view_in = [clf.prepare(v.apply(p)) for p in pics for v in tta.views]
    probs = forward_probs(clf, plain_in + view_in, batch_size)
    views = probs[len(plain_in):].reshape(n, nv, -1)
    plain = views[:, ident] if ident is not None else probs[:n]
    merged = merge_probs(views, tta.merge, tta.temperature)
    return plain, views, merged


def predict_one(clf: Classifier, pic: Picture, tta: TTARecipe) -> dict:
    """Per-view predictions and the merged one for one picture (the GUI panel shows this)."""
    plain, views, merged = predict_views(clf, [pic], tta)
    rows = []
    for v, p in zip(tta.views, views[0]):
        k = int(p.argmax())
        rows.append({"view": v.name, "pred": clf.classes[k], "confidence": float(p[k]), "probs": p.tolist()})
    k = int(merged[0].argmax())
    k0 = int(plain[0].argmax())
    return {"views": rows, "merged": {"pred": clf.classes[k], "confidence": float(merged[0][k]),
                                      "probs": merged[0].tolist()},
            "plain": {"pred": clf.classes[k0], "confidence": float(plain[0][k0]), "probs": plain[0].tolist()},
            "merge": tta.merge}


# -- evaluation --------------------------------------------------------------------------------------------
@dataclass
class TTAReport:
    classes: list[str]
    tta: dict
    model: str
    view_names: list = field(default_factory=list)
    n: int = 0
    correct_plain: int = 0
    correct_tta: int = 0
    per_class: dict = field(default_factory=dict)  # class -> {n, plain, tta} (accuracies)
    confusion_plain: list = field(default_factory=list)  # rows: true class, columns: predicted
    confusion_tta: list = field(default_factory=list)
    fixed: list = field(default_factory=list)  # paths TTA got right and the plain pass got wrong
    broke: list = field(default_factory=list)
    items: list = field(default_factory=list)  # {path, label, plain, plain_conf, tta, tta_conf}
    skipped: list = field(default_factory=list)  # {path, error}
    cancelled: bool = False

    @property
    def accuracy_plain(self) -> float:
        return self.correct_plain / self.n if self.n else 0.0

    @property
    def accuracy_tta(self) -> float:
        return self.correct_tta / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {"model": self.model, "tta": self.tta, "views": self.view_names, "classes": self.classes, "n": self.n,
                "accuracy_plain": self.accuracy_plain, "accuracy_tta": self.accuracy_tta,
                "correct_plain": self.correct_plain, "correct_tta": self.correct_tta,
                "per_class": self.per_class, "confusion_plain": self.confusion_plain,
                "confusion_tta": self.confusion_tta, "fixed": self.fixed, "broke": self.broke,
                "items": self.items, "skipped": self.skipped, "cancelled": self.cancelled}

    def table(self) -> str:
        """A readable Markdown table: per class and overall, then what TTA fixed and broke."""
        views = self.tta.get("views")
        label = f"{views} ({len(self.view_names)} views)" if isinstance(views, str) else f"{len(self.view_names)} views"
        lines = [f"TTA evaluation of {self.model}: {label}, merge {self.tta.get('merge')}, {self.n} images"
                 + (f", {len(self.skipped)} skipped" if self.skipped else ""), "",
                 "| class | images | accuracy without TTA | accuracy with TTA | change |",
                 "|---|---:|---:|---:|---:|"]
        for c in self.classes:
            pc = self.per_class.get(c)
            if not pc or not pc["n"]:
                continue
            lines.append(f"| {c} | {pc['n']} | {pc['plain']:.1%} | {pc['tta']:.1%} | "
                         f"{(pc['tta'] - pc['plain']) * 100:+.1f} pts |")
        lines.append(f"| **all** | {self.n} | {self.accuracy_plain:.1%} | {self.accuracy_tta:.1%} | "
                     f"{(self.accuracy_tta - self.accuracy_plain) * 100:+.1f} pts |")
        lines += ["", f"TTA fixed {len(self.fixed)} images and broke {len(self.broke)}."]
        for title, paths in (("fixed", self.fixed), ("broke", self.broke)):
            if paths:
                lines.append(f"{title}: " + ", ".join(paths[:20]) + (" ..." if len(paths) > 20 else ""))
        lines += ["", "Confusion matrix with TTA (rows: true class, columns: predicted):", "",
                  _matrix_text(self.classes, self.confusion_tta)]
        return "\n".join(lines) + "\n"


def _matrix_text(classes: list[str], m: list) -> str:
    w = max([len(c) for c in classes] + [4])
    head = " " * w + " " + " ".join(f"{c[:6]:>6}" for c in classes)
    rows = [head] + [f"{c:>{w}} " + " ".join(f"{v:>6d}" for v in row) for c, row in zip(classes, m)]
    return "\n".join(rows)


def _label_map(ds, clf: Classifier) -> dict[int, int]:
    known = {c: i for i, c in enumerate(clf.classes)}
    missing = [c for c in ds.classes if c not in known]
    if missing:
        raise DatasetError(f"{ds.root}: class folder(s) {', '.join(missing)} are not classes of the model "
                           f"({', '.join(clf.classes)}); evaluate on a folder whose class names match the model's")
    return {i: known[c] for i, c in enumerate(ds.classes)}


def read_pictures(ds, items, skipped: list) -> list[tuple]:
    """(item, Picture) for the items that decode; the others are appended to ``skipped``."""
    out = []
    for it in items:
        try:
            out.append((it, read_image(ds.abspath(it))))
        except ImageError as e:
            skipped.append({"path": it.path, "error": e.cause})
        except AugstudioError as e:
            skipped.append({"path": it.path, "error": str(e)})
    return out


def evaluate_job(data, clf: Classifier, tta=None, batch_size: int = 64, cancel: CancelToken | None = None):
    """Job: accuracy of ``clf`` on the labelled folder ``data`` without and with TTA; returns a TTAReport.

    Images are processed in chunks (``batch_size`` forward passes at a time); bad files are skipped and
    listed in ``report.skipped``.
    """

    tta = load_tta(tta)
    cancel = cancel or CancelToken()
    ds = data if isinstance(data, Dataset) else require_images(scan(data, check_files=False))
    if ds.layout != "imagefolder":
        raise DatasetError(f"{ds.root}: TTA evaluation needs labelled images in class folders "
                           "(ImageFolder layout: DIR/<class>/<image>); for unlabelled images use distill")
    lmap = _label_map(ds, clf)
    c = len(clf.classes)
    rep = TTAReport(list(clf.classes), tta.to_dict(), clf.name, tta.names)
    conf_p = torch.zeros(c, c, dtype=torch.long, device="cpu")
    conf_t = torch.zeros(c, c, dtype=torch.long, device="cpu")
    per_image = max(1, batch_size // len(tta.views))
    total = len(ds.items)
    yield Progress(0, total, "starting")
    for s in range(0, total, per_image):
        cancel.check(f"TTA evaluation stopped after {s} of {total} images")
        chunk = read_pictures(ds, ds.items[s:s + per_image], rep.skipped)
        if chunk:
            plain, _views, merged = predict_views(clf, [p for _, p in chunk], tta, batch_size)
            for (it, _), pp, pm in zip(chunk, plain, merged):
                y = lmap[it.label]
                a, b = int(pp.argmax()), int(pm.argmax())
                conf_p[y, a] += 1
                conf_t[y, b] += 1
                rep.items.append({"path": it.path, "label": clf.classes[y], "plain": clf.classes[a],
                                  "plain_conf": round(float(pp[a]), 6), "tta": clf.classes[b],
                                  "tta_conf": round(float(pm[b]), 6)})
                if a != y and b == y:
                    rep.fixed.append(it.path)
                elif a == y and b != y:
                    rep.broke.append(it.path)
        done = min(total, s + per_image)
        yield Progress(done, total, f"{done}/{total} images")
    rep.n = int(conf_p.sum())
    rep.correct_plain = int(conf_p.diag().sum())
    rep.correct_tta = int(conf_t.diag().sum())
    rep.confusion_plain = conf_p.tolist()
    rep.confusion_tta = conf_t.tolist()
    for k, name in enumerate(clf.classes):
        nk = int(conf_p[k].sum())
        if nk:
            rep.per_class[name] = {"n": nk, "plain": int(conf_p[k, k]) / nk, "tta": int(conf_t[k, k]) / nk}
    return rep
