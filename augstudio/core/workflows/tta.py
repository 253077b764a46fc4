"""Test-time augmentation (TTA): run a classifier on several deterministic views of each image and merge
the class probabilities (AlexNet's and ResNet's 10-crop testing; the dihedral group for wafer maps). The
views and the merge rules are the TTA recipe (``tta_views``).

The evaluation (``evaluate_job``) reports accuracy without TTA (the plain image, one forward pass) and with
it, per class, both confusion matrices, and which images TTA fixed or broke.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import AugstudioError, DatasetError, ImageError, ModelError, RecipeError
from augstudio.core.base.jobs import CancelToken, Progress, run_job
from augstudio.core.io.dataset import Dataset, require_images, scan
from augstudio.core.io.images import Picture, read_image
from augstudio.core.models import loading as models
from augstudio.core.models.loading import model_dtype

from . import probe
from .tta_views import MERGES, TTARecipe, load_tta


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
                         cancel: CancelToken | None = None, arch: str | None = None) -> Classifier:
    """Load ``spec`` (a checkpoint / TorchScript file / torchvision name, or ``probe``) through
    ``augstudio.core.models.loading``. ``probe`` trains (or reuses the saved) probe classifier on the labelled
    folder ``data``."""
    return run_job(load_classifier_job(spec, data, device, allow_code, cancel, arch), on_progress)


def load_classifier_job(spec: str, data=None, device=None, allow_code: bool = False,
                        cancel: CancelToken | None = None, arch: str | None = None):
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
        lm = models.load_model(spec, device=device, allow_code=allow_code, arch=arch)
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
