"""Ops are declarations: each op states its parameters once, and validation, GUI editors, CLI help and
the README's ops table all come from that statement.

An op is used in two steps (sample, then apply):

* ``sample(gen, size) -> params``: draw this application's random parameters from an explicit
  ``torch.Generator`` (``size`` is the input's (height, width)). ``params`` is plain JSON data, so it can
  be shown in the GUI, written to the export manifest, and replayed.
* ``apply(x, params, kind) -> x``: deterministic. ``x`` is a uint8 tensor ``C x H x W`` (or ``N x C x H x W``
  for ops that support batches), ``kind`` is the picture kind (gray, rgb, rgba, categorical).

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
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from augstudio.core.base.errors import ParamError, RecipeError

PARAM_KINDS = ("float", "int", "bool", "choice", "range", "int_range", "size", "fill", "str", "path", "steps")


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    kind:
      float / int      a number in [low, high]
      bool             true / false
      choice           one of ``choices``
      range            a pair [a, b] of floats with low <= a <= b <= high; one number x is accepted and
                       expanded by ``scalar``: "symmetric" -> [-x, x], "factor" -> [max(0, 1-x), 1+x],
                       "upto" -> [0, x], "exact" -> [x, x]
      int_range        the same with integers
      size             [height, width] positive ints; one int n means [n, n]
      fill             a fill value 0..255: one number for all channels, or one per channel
      str / path       free text / a file or folder path
      steps            a list of nested steps (containers such as one_of)
    """

    name: str
    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    help: str = ""
    scalar: str = "exact"
    optional: bool = False  # None is a valid value ("not set")

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"unknown param kind {self.kind!r}")

    # -- description (CLI help, README, GUI tooltips) -------------------------------------------
    def describe_range(self) -> str:
        if self.kind == "choice":
            return " | ".join(str(c) for c in self.choices)
        if self.kind in ("float", "int", "range", "int_range"):
            lo = "-inf" if self.low is None else _fmt(self.low)
            hi = "inf" if self.high is None else _fmt(self.high)
            return f"{lo} .. {hi}"
        if self.kind == "size":
            return ">= 1"
        if self.kind == "fill":
            return "0 .. 255"
        return ""

    # -- validation ---------------------------------------------------------------------------------
    def validate(self, value: Any, where: str = "") -> Any:
        """Return the canonical form of ``value`` or raise ParamError naming the parameter and range."""
        prefix = f"{where}parameter '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{prefix} is required ({self.help or self.kind})")
        k = self.kind
        if k == "bool":
            if isinstance(value, bool):
                return value
            raise ParamError(f"{prefix} must be true or false, got {value!r}")
        if k == "choice":
            if value in self.choices:
                return value
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ParamError(f"{prefix} must be one of {', '.join(map(str, self.choices))}; got {value!r}{hint}")
        if k in ("str", "path"):
            if isinstance(value, str):
                return value
            raise ParamError(f"{prefix} must be text, got {value!r}")
        if k == "float":
            return self._number(value, prefix, integer=False)
        if k == "int":
            return self._number(value, prefix, integer=True)
        if k in ("range", "int_range"):
            integer = k == "int_range"
            if _is_number(value):
                x = self._plain(value, prefix, integer)
                a, b = {
                    "symmetric": (-x, x),
                    "factor": (max(0, 1 - x), 1 + x),
                    "upto": (0, x),
                    "exact": (x, x),
                }[self.scalar]
                if self.scalar == "symmetric" and x < 0:
                    raise ParamError(f"{prefix}: a single number means [-x, x], so it must be >= 0, got {value!r}")
                value = [a, b]
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ParamError(f"{prefix} must be a pair [low, high] within {self.describe_range()}, got {value!r}")
            a = self._plain(value[0], prefix, integer)
            b = self._plain(value[1], prefix, integer)
            if a > b:
                raise ParamError(f"{prefix}: low must not exceed high, got [{_fmt(a)}, {_fmt(b)}]")
            for v in (a, b):
                self._check_bounds(v, prefix, shown=value)
            return [a, b]
        if k == "size":
            if _is_number(value):
                value = [value, value]
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ParamError(f"{prefix} must be [height, width] or one integer, got {value!r}")
            out = []
            for v in value:
                iv = self._plain(v, prefix, True)
                if iv < 1 or iv > 65536:
                    raise ParamError(f"{prefix} sides must be between 1 and 65536, got {value!r}")
                out.append(iv)
            return out
        if k == "fill":
            vals = value if isinstance(value, (list, tuple)) else [value]
            if not 1 <= len(vals) <= 4:
                raise ParamError(f"{prefix} must be one number or one per channel (up to 4), got {value!r}")
            out = []
            for v in vals:
                fv = self._plain(v, prefix, False)
                if not 0 <= fv <= 255:
                    raise ParamError(f"{prefix} values must be within 0 .. 255, got {value!r}")
                out.append(int(fv) if float(fv).is_integer() else fv)
            return out[0] if not isinstance(value, (list, tuple)) else out
        if k == "steps":
            # nested steps are parsed by the recipe module (it knows the registry)
            from augstudio.core.engine.recipe import parse_steps

            if not isinstance(value, (list, tuple)):
                raise ParamError(f"{prefix} must be a list of steps, got {value!r}")
            return parse_steps(value, where=f"{where}'{self.name}' ")
        raise ParamError(f"{prefix}: unsupported kind {k}")  # pragma: no cover

    def _plain(self, value, prefix, integer):
        if not _is_number(value):
            raise ParamError(f"{prefix} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"{prefix} must be finite, got {value!r}")
        if integer:
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"{prefix} must be a whole number, got {value!r}")
            return int(value)
        return float(value) if isinstance(value, float) else value

    def _number(self, value, prefix, integer):
        v = self._plain(value, prefix, integer)
        self._check_bounds(v, prefix, shown=value)
        return v

    def _check_bounds(self, v, prefix, shown):
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise ParamError(f"{prefix} must be within {self.describe_range()}, got {shown!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


class Op:
    """Base of every per-image op. Subclasses set the class attributes and override sample/apply."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "misc"  # geometry | color | noise | erase | container | style | policy
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # How the op treats categorical (palette) pictures:
    #   "geometric": applies; resamples nearest, so the set of values never changes
    #   "refuse":    refused with a message that says why
    #   "custom":    the op handles kind == "categorical" itself (e.g. flips dies between categories)
    categorical: ClassVar[str] = "refuse"
    categorical_reason: ClassVar[str] = ""

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

    # -- the two steps -------------------------------------------------------------------------------
    def sample(self, gen, size: tuple[int, int]) -> dict:
        """Draw this application's random parameters (plain data) from ``gen``."""
        return {}

    def apply(self, x, params: dict, kind: str):
        raise NotImplementedError

    def apply_batch(self, x, params_list: list[dict], kind: str):
        """Apply to ``N x C x H x W`` with per-item params. Ops override this with one kernel per batch."""
        import torch

        return torch.stack([self.apply(x[i], params_list[i], kind) for i in range(x.shape[0])])

    def output_size(self, size: tuple[int, int], params: dict) -> tuple[int, int]:
        return size

    def refuse_categorical(self, where: str = "") -> RecipeError:
        why = self.categorical_reason or (
            "its pixel values are category labels (e.g. off-wafer / pass / fail), not intensities, so a "
            f"{self.family} op would invent values that mean nothing")
        return RecipeError(f"{where}op '{self.name}' cannot be applied to a categorical (palette) image: {why}. "
                           "Remove this step for categorical datasets, or use a geometric op.")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"


REGISTRY: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"op name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_op(name: str, where: str = "") -> type[Op]:
    from . import load_all

    load_all()
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(str(name), list(REGISTRY), n=3, cutoff=0.5)
    hint = f" Closest known ops: {', '.join(close)}." if close else ""
    raise RecipeError(f"{where}unknown op {name!r}.{hint} Run `augstudio ops` for the full list.")


def all_ops() -> dict[str, type[Op]]:
    from . import load_all

    load_all()
    return dict(REGISTRY)


class BatchOp(Op):
    """Base of batch ops (the recipe's ``batch:`` list): they act on a whole batch and on its labels.

    ``sample(gen, n, size, num_classes) -> params`` draws the batch's random parameters (pairing,
    lambda, boxes) and ``apply_to_batch(images, soft_labels, params, model=None) -> (images, soft_labels)``
    applies them; ``images`` is ``N x C x H x W`` float in 0..1, ``soft_labels`` is ``N x K``.
    """

    family: ClassVar[str] = "batch"
    categorical: ClassVar[str] = "refuse"
    needs_model: ClassVar[bool] = False

    def sample(self, gen, n: int = 1, size: tuple[int, int] = (0, 0), num_classes: int = 0) -> dict:  # type: ignore[override]
        return {}

    def apply_to_batch(self, images, soft_labels, params: dict, model=None):
        raise NotImplementedError


BATCH_REGISTRY: dict[str, type[BatchOp]] = {}


def register_batch(cls: type[BatchOp]) -> type[BatchOp]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    BATCH_REGISTRY[cls.name] = cls
    return cls


def get_batch_op(name: str, where: str = "") -> type[BatchOp]:
    from . import load_all

    load_all()
    if name in BATCH_REGISTRY:
        return BATCH_REGISTRY[name]
    if name in REGISTRY:
        raise RecipeError(f"{where}'{name}' is a per-image op: put it under 'steps:', not 'batch:'.")
    close = difflib.get_close_matches(str(name), list(BATCH_REGISTRY), n=3, cutoff=0.5)
    hint = f" Closest known batch ops: {', '.join(close)}." if close else ""
    known = ", ".join(sorted(BATCH_REGISTRY)) or "none yet"
    raise RecipeError(f"{where}unknown batch op {name!r}.{hint} Batch ops: {known}.")


def all_batch_ops() -> dict[str, type[BatchOp]]:
    from . import load_all

    load_all()
    return dict(BATCH_REGISTRY)
