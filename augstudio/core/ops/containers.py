"""Containers: ops that hold nested steps (Param kind "steps") and pick / order them per image.

Each nested step keeps its own ``p``. The record of a container lists, in the order applied, every
nested step it ran: ``{"index": i, "op": name, "applied": bool, "params": {...}}``, so the manifest and
the GUI show per-step parameters. A container applies to categorical pictures when every nested step it
picks does.
"""

from __future__ import annotations

from augstudio.core.base import seeding

from .base import Op
from .params import Param
from .registry import get_op, register
from .step import Step, parse_steps

STEPS = Param("steps", "steps", [], help="the nested steps (each with its own p)")


class ContainerOp(Op):
    family = "container"
    categorical = "custom"

    @classmethod
    def validate(cls, values: dict, where: str = "") -> dict:
        # parsed nested steps (Step objects) come back here when a pipeline builds the op: re-validate
        # them from their dict form
        def plain(v):
            return [s.to_dict() if isinstance(s, Step) else s for s in v] if isinstance(v, list) else v

        out = super().validate({k: plain(v) if k == "steps" else v for k, v in values.items()}, where)
        out["steps"] = parse_steps(out["steps"], where=f"{where}'steps' ")
        return out

    @property
    def nested(self):
        if not hasattr(self, "_nested"):
            self._nested = [get_op(s.op)(**s.values) for s in self.steps]
        return self._nested

    def order(self, gen) -> list[int]:
        raise NotImplementedError

    def sample(self, gen, size):
        runs = []
        for i in self.order(gen):
            step, op = self.steps[i], self.nested[i]
            applied = step.enabled and seeding.coin(gen, step.p)
            params = op.sample(gen, size) if applied else None
            if applied:
                size = tuple(op.output_size(size, params))
            runs.append({"index": i, "op": step.op, "applied": applied, "params": params})
        return {"runs": runs}

    def output_size(self, size, params):
        for r in params["runs"]:
            if r["applied"]:
                size = tuple(self.nested[r["index"]].output_size(size, r["params"]))
        return size

    def apply(self, x, params, kind):
        for r in params["runs"]:
            if not r["applied"]:
                continue
            op = self.nested[r["index"]]
            if kind == "categorical" and op.categorical == "refuse":
                raise op.refuse_categorical(f"op '{self.name}', nested step {r['index'] + 1}: ")
            x = op.apply(x, r["params"], kind)
        return x


@register
class OneOf(ContainerOp):
    name = "one_of"
    summary = "Apply one of the nested steps, picked uniformly at random."
    params = (STEPS,)

    def order(self, gen):
        return [seeding.choice(gen, len(self.steps))] if self.steps else []


@register
class SomeOf(ContainerOp):
    name = "some_of"
    summary = "Apply n of the nested steps (n drawn from a range), picked without replacement, in recipe order."
    params = (STEPS, Param("n", "int_range", [1, 2], low=0, high=100, typical=(0, 5), scalar="exact", help="how many steps to apply"))

    def order(self, gen):
        k = min(seeding.randint(gen, *self.n), len(self.steps))
        picked = seeding.randperm(gen, len(self.steps))[:k]
        return sorted(picked)


@register
class RandomOrder(ContainerOp):
    name = "random_order"
    summary = "Apply all nested steps in a random order."
    params = (STEPS,)

    def order(self, gen):
        return seeding.randperm(gen, len(self.steps))


__all__ = ["ContainerOp", "OneOf", "SomeOf", "RandomOrder"]
