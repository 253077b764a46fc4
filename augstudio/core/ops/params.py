"""Parameter declarations: an op states each parameter once (name, kind, default, legal range, help), and
validation with clear messages, the GUI's editors, the CLI help and the README's ops table come from that."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from augstudio.core.base.errors import ParamError

PARAM_KINDS = ("float", "int", "bool", "choice", "range", "int_range", "size", "fill", "numbers", "str", "path",
               "steps")


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
      numbers          one number or a list of numbers (e.g. one per channel), each in [low, high]
      str / path       free text / a file or folder path
      steps            a list of nested steps (containers such as one_of)

    ``typical`` is the span an editor's slider covers (where the useful values are); typed values and
    recipes may use the whole legal range [low, high].
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
    typical: tuple | None = None  # (low, high) of a slider; None: the legal range

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"unknown param kind {self.kind!r}")

    def slider_range(self) -> tuple[float, float] | None:
        """The span of a slider for this parameter (numbers only): ``typical``, else the legal range, else
        None (unbounded)."""
        if self.typical is not None:
            return float(self.typical[0]), float(self.typical[1])
        if self.low is not None and self.high is not None:
            return float(self.low), float(self.high)
        return None

    # -- description (CLI help, README, GUI tooltips) -------------------------------------------
    def describe_range(self) -> str:
        if self.kind == "choice":
            return " | ".join(str(c) for c in self.choices)
        if self.kind in ("float", "int", "range", "int_range", "numbers"):
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
                value = [a + 0, b + 0]  # + 0: -0.0 (from [-x, x] at 0) reads as 0
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
        if k == "numbers":
            vals = value if isinstance(value, (list, tuple)) else [value]
            if not vals:
                raise ParamError(f"{prefix} must be a number or a list of numbers, got {value!r}")
            out = [self._plain(v, prefix, False) for v in vals]
            for v in out:
                self._check_bounds(v, prefix, shown=value)
            return [float(v) for v in out]
        if k == "steps":
            # the nested steps themselves are parsed by the container op (ops.containers), which knows
            # the registry; a parameter declaration stays below it
            if not isinstance(value, (list, tuple)):
                raise ParamError(f"{prefix} must be a list of steps, got {value!r}")
            return list(value)
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
