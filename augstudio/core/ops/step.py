"""A recipe step (op name, validated values, probability, on/off) and its parsing from plain data.

Steps live with the ops because container ops (``one_of`` ...) hold nested steps; the recipe is a list of
them plus a seed."""

from __future__ import annotations

import copy as _copy
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from augstudio.core.base.errors import AugstudioError, RecipeError

from .registry import get_batch_op, get_op

RESERVED_STEP_KEYS = ("op", "p", "enabled")


@dataclass
class Step:
    """One step: an op name, its validated parameter values, its probability and an on/off switch."""

    op: str
    values: dict = field(default_factory=dict)
    p: float = 1.0
    enabled: bool = True
    batch: bool = False  # a batch-stage step (names such as one_of exist in both registries)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"op": self.op}
        for k, v in self.values.items():
            d[k] = [s.to_dict() for s in v] if _is_step_list(v) else _copy.deepcopy(v)
        d["p"] = self.p
        if not self.enabled:
            d["enabled"] = False
        return d

    def copy(self) -> Step:
        return parse_step(self.to_dict(), batch=self.batch)


def _is_step_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(s, Step) for s in v)


def parse_step(raw: Any, where: str = "", batch: bool = False) -> Step:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}must be a mapping like {{op: hflip, p: 0.5}}, got {raw!r}")
    if "op" not in raw:
        raise RecipeError(f"{where}has no 'op' key (got keys: {', '.join(map(str, raw)) or 'none'})")
    name = raw["op"]
    if not isinstance(name, str):
        raise RecipeError(f"{where}'op' must be an op name, got {name!r}")
    cls = get_batch_op(name, where) if batch else get_op(name, where)
    where = f"{where}({name}): "
    p = raw.get("p", 1.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1:
        raise RecipeError(f"{where}parameter 'p' (probability of applying the step) must be within 0 .. 1, got {p!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RecipeError(f"{where}'enabled' must be true or false, got {enabled!r}")
    values = {k: v for k, v in raw.items() if k not in RESERVED_STEP_KEYS}
    if any(not isinstance(k, str) for k in values):
        raise RecipeError(f"{where}parameter names must be text, got {list(values)!r}")
    try:
        canonical = cls.validate(values, where)
    except AugstudioError:
        raise
    except Exception as e:  # a bug in an op's validate must still read as a recipe problem
        raise RecipeError(f"{where}invalid parameters: {e}") from None
    return Step(name, canonical, float(p), enabled, batch)


def parse_steps(raw: Any, where: str = "", batch: bool = False) -> list[Step]:
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        key = "batch" if batch else "steps"
        raise RecipeError(f"{where}'{key}' must be a list of steps, got {type(raw).__name__}")
    label = "batch step" if batch else "step"
    return [parse_step(s, f"{where}{label} {i + 1} ", batch) for i, s in enumerate(raw)]


def stream_keys(steps: list[Step]) -> list[str]:
    """A generator stream per step, keyed by op name and occurrence ("rotate#0"), so adding or editing a
    different step does not reroll this one."""
    seen: Counter = Counter()
    keys = []
    for s in steps:
        keys.append(f"{s.op}#{seen[s.op]}")
        seen[s.op] += 1
    return keys
