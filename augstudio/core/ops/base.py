"""Ops are declarations: each op states its parameters once, and validation, GUI editors, CLI help and
the README's ops table all come from that statement.

A per-image op is used in two steps (sample, then apply):

* ``sample(gen, size) -> params``: draw this application's random parameters from an explicit
  ``torch.Generator`` (``size`` is the input's (height, width)). ``params`` is plain JSON data, so it can
  be shown in the GUI, written to the export manifest, and replayed.
* ``apply(x, params, kind) -> x``: deterministic. ``x`` is a uint8 tensor ``C x H x W``, ``kind`` is the
  picture kind (gray, rgb, rgba, categorical). ``apply_batch(x, params_list, kind)`` does the same for
  ``N x C x H x W`` with one record per item; the engine only ever calls ``apply_batch`` (a single image
  is a batch of one, which by default goes through ``apply``).

What an op *is* is declared by its base class, never probed: ``GeometricOp`` (``ops.geometry``) states its
forward affine (so runs of them fuse into one resampling), ``PointwiseOp`` maps each pixel on its own given image-wide
statistics (so the engine may move it past later geometry), ``BatchOp`` acts on a batch and its labels.

Adding an op is one small class::

    @register
    class Invert(Op):
        name = "invert"
        family = "color"
        summary = "Invert the colours: x -> 255 - x."
        categorical = "refuse"
        def apply(self, x, params, kind):
            return 255 - x
"""

from __future__ import annotations

import difflib
from typing import ClassVar

from augstudio.core.base.errors import ParamError, RecipeError

from .params import Param


class Declared:
    """What every op shares: a name, a family, a one-line summary and its declared parameters."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "misc"  # geometry | color | noise | erase | container | style | policy | batch
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # How the op treats categorical (palette) pictures:
    #   "geometric": applies; resamples nearest, so the set of values never changes
    #   "refuse":    refused with a message that says why
    #   "custom":    the op handles kind == "categorical" itself (e.g. flips dies between categories)
    categorical: ClassVar[str] = "refuse"
    categorical_reason: ClassVar[str] = ""
    # What the op does to masks, boxes and keypoints when its base class does not say it all (see
    # ops.target_effects): None (by base class), "keep", "refuse", ...
    targets: ClassVar[str | None] = None

    def __init__(self, **values):
        self.values = self.validate(values)
        for p in self.params:
            setattr(self, p.name, self.values[p.name])

    @classmethod
    def validate(cls, values: dict, where: str = "") -> dict:
        known = {p.name: p for p in cls.params}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=2)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                allowed = ", ".join(known) or "none"
                raise ParamError(f"{where}unknown parameter {key!r} for op '{cls.name}' "
                                 f"(its parameters: {allowed}, p){hint}")
        out = {}
        for p in cls.params:
            out[p.name] = p.validate(values.get(p.name, p.default), where)
        cls.check(out, where)
        return out

    @classmethod
    def check(cls, values: dict, where: str = "") -> None:
        """Cross-parameter checks; raise ParamError. Override when parameters constrain each other."""

    def refuse_categorical(self, where: str = "") -> RecipeError:
        why = self.categorical_reason or (
            "its pixel values are category labels (e.g. off-wafer / pass / fail), not intensities, so a "
            f"{self.family} op would invent values that mean nothing")
        return RecipeError(f"{where}op '{self.name}' cannot be applied to a categorical (palette) image: {why}. "
                           "Remove this step for categorical datasets, or use a geometric op.")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"


class Op(Declared):
    """Base of every per-image op. Subclasses set the class attributes and override sample/apply."""

    def sample(self, gen, size: tuple[int, int]) -> dict:
        """Draw this application's random parameters (plain data) from ``gen``."""
        return {}

    def apply(self, x, params: dict, kind: str):
        raise NotImplementedError

    def apply_batch(self, x, params_list: list[dict], kind: str):
        """Apply to ``N x C x H x W`` with one record per item. A batch of one goes through ``apply``, so
        the per-image result is the definition; ops override this with one kernel for N > 1."""
        if x.shape[0] == 1:
            return self.apply(x[0], params_list[0], kind)[None]
        return _stack([self.apply(x[i], params_list[i], kind) for i in range(x.shape[0])])

    def output_size(self, size: tuple[int, int], params: dict) -> tuple[int, int]:
        return size


class PointwiseOp(Op):
    """Each output pixel depends only on that input pixel and on image-wide statistics (contrast's mean
    grey). The engine may move such an op past later geometric steps so a run of geometry resamples once;
    the statistics are then measured on a small probe of the image at the op's own place in the chain
    (``stats``) and handed to ``apply(..., stats=...)``."""

    # apply() also takes a float32 image of whole numbers 0..255 (no alpha) and may modify it in place:
    # the engine hands it the fused warp's float result to skip a uint8 round trip
    accepts_float: ClassVar[bool] = False

    def needs_stats(self, params) -> bool:
        return False

    def stats(self, x, params, kind):
        """Image statistics the op needs (measured where the op stands in the chain)."""
        return None

    def apply(self, x, params, kind, stats=None):
        raise NotImplementedError

    def apply_batch(self, x, params_list, kind, stats=None):
        stats = stats or [None] * x.shape[0]
        if x.shape[0] == 1:
            return self.apply(x[0], params_list[0], kind, stats=stats[0])[None]
        return _stack([self.apply(x[i], params_list[i], kind, stats=stats[i]) for i in range(x.shape[0])])


def _stack(outs: list):
    """Per-item results as one batch (without importing torch here: declarations import without it)."""
    out = outs[0].new_empty((len(outs), *outs[0].shape))
    for i, o in enumerate(outs):
        out[i] = o
    return out


class BatchOp(Declared):
    """Base of batch ops (the recipe's ``batch:`` list): they act on a whole batch and on its labels.

    ``sample(gen, n, size, num_classes) -> params`` draws the batch's random parameters (pairing,
    lambda, boxes) and ``apply_to_batch(images, soft_labels, params, model=None) -> (images, soft_labels)``
    applies them; ``images`` is ``N x C x H x W`` float in 0..1, ``soft_labels`` is ``N x K``.
    ``mix(...)`` also returns what a manifest shows beyond the images (PuzzleMix's mask), so nothing is kept
    on the op between calls.
    """

    family = "batch"
    categorical = "refuse"
    needs_model: ClassVar[bool] = False

    def sample(self, gen, n: int = 1, size: tuple[int, int] = (0, 0), num_classes: int = 0) -> dict:
        return {}

    def apply_to_batch(self, images, soft_labels, params: dict, model=None):
        raise NotImplementedError

    def mix(self, images, soft_labels, params: dict, model=None) -> tuple:
        """``(images, soft_labels, details)``: ``details`` maps names to per-item values (tensors with the
        batch on the first axis) worth recording, e.g. PuzzleMix's block mask; empty for most ops."""
        images, soft_labels = self.apply_to_batch(images, soft_labels, params, model)
        return images, soft_labels, {}

    def model_spec(self) -> str | None:
        """The model this step names for its own use (export, GUI), or None."""
        return None


__all__ = ["Declared", "Op", "PointwiseOp", "BatchOp", "Param"]
