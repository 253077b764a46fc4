"""Runs a recipe's per-image steps on one picture: sample each step's parameters from its own generator,
then apply them. Also replays recorded parameters (the GUI and the export manifest use that)."""

from __future__ import annotations

from collections import Counter

from . import seeding
from .errors import AugstudioError, RecipeError
from .images import Picture
from .recipe import Step


def stream_keys(steps: list[Step]) -> list[str]:
    """A generator stream per step, keyed by op name and occurrence ("rotate#0"), so adding or editing a
    different step does not reroll this one."""
    seen: Counter = Counter()
    keys = []
    for s in steps:
        keys.append(f"{s.op}#{seen[s.op]}")
        seen[s.op] += 1
    return keys


class Pipeline:
    def __init__(self, steps: list[Step]):
        from .ops import get_op

        self.steps = list(steps)
        self.keys = stream_keys(self.steps)
        self.ops = []
        for i, s in enumerate(self.steps):
            cls = get_op(s.op, f"step {i + 1} ")
            self.ops.append(cls(**s.values))

    def where(self, i: int) -> str:
        return f"step {i + 1} ({self.steps[i].op}): "

    def sample(self, size: tuple[int, int], seed: int, item, copy: int) -> list[dict]:
        """The records (applied?, params) each step would use for this (seed, item, copy), without pixels.

        The size each step sees follows the chain (a crop changes it for later steps).
        """
        records = []
        for i, (step, op) in enumerate(zip(self.steps, self.ops)):
            if not step.enabled:
                records.append({"step": i + 1, "op": step.op, "applied": False, "params": None})
                continue
            gen = seeding.generator(seed, item, copy, self.keys[i])
            applied = seeding.coin(gen, step.p)
            params = op.sample(gen, size) if applied else None
            if applied:
                size = tuple(op.output_size(size, params))
            records.append({"step": i + 1, "op": step.op, "applied": applied, "params": params})
        return records

    def run(self, pic: Picture, seed: int, item=0, copy: int = 0) -> tuple[Picture, list[dict]]:
        records = self.sample(pic.size, seed, item, copy)
        return self.replay(pic, records), records

    def replay(self, pic: Picture, records: list[dict]) -> Picture:
        x = pic.pixels
        kind = pic.kind
        for i, (op, rec) in enumerate(zip(self.ops, records)):
            if not rec["applied"]:
                continue
            if kind == "categorical" and op.categorical == "refuse":
                raise op.refuse_categorical(self.where(i))
            try:
                x = op.apply(x, rec["params"], kind)
            except AugstudioError:
                raise
            except Exception as e:
                raise RecipeError(f"{self.where(i)}failed on a {kind} image of size "
                                  f"{tuple(x.shape[-2:])}: {type(e).__name__}: {e}") from e
        return pic.with_pixels(x)
