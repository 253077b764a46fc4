"""Runs a recipe's per-image steps: sample each step's parameters from its own generator, then apply them.
Also replays recorded parameters (the GUI and the export manifest use that).

One image and a batch go through the same code: ``run_batch`` takes ``N x C x H x W`` uint8 items, draws
each item's records from the seed path (as ``run`` does for one picture), plans each item's groups
(``fusion.plan``) and runs the items whose plans agree together, one kernel per group (``fusion.run_group``).
Interpolation, border and fill are therefore per item, and item ``i`` of a batch equals ``Recipe.apply``
for the same (item, copy): exactly where the kernels are the same, within a grey level where a batched
kernel rounds differently (tests/core/test_batched.py).

Records are never changed by fusion: one record per step, exactly as ``sample`` made it.
"""

from __future__ import annotations

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.base.keys import item_key
from augstudio.core.io.images import Picture
from augstudio.core.kernels import jit
from augstudio.core.ops.base import Op
from augstudio.core.ops.output import OutputOp
from augstudio.core.ops.registry import get_op
from augstudio.core.ops.step import Step, stream_keys

from .fusion import plan, run_group, signature
from .targets import check_steps, through_group


class Pipeline:
    def __init__(self, steps: list[Step], fuse: bool = True):
        self.steps = list(steps)
        self.fuse = fuse
        self.keys = stream_keys(self.steps)
        self.ops = []
        for i, s in enumerate(self.steps):
            cls = get_op(s.op, f"step {i + 1} ")
            self.ops.append(cls(**s.values))
        # a step that always runs (p = 1) and whose op draws nothing needs no generator: its coin says yes
        # whatever it draws, and its stream is its own (flips, fixed crops, invert, ...: ~8 us a step)
        self.fixed = [s.p >= 1.0 and type(op).sample is Op.sample for s, op in zip(self.steps, self.ops)]
        # ops that keep the size (colour, noise, erasing) need no output_size call per step and call
        self.resizes = [type(op).output_size is not Op.output_size for op in self.ops]
        if not all(self.fixed):
            jit.load("seed_jit")  # the steps' first draws, compiled (seeding.use_first_words); numpy's until then
        self._plans: dict = {}  # (applied steps, kind, fuse) -> the groups' step indices
        # what sampling reads of each step, in one tuple per step (one lookup instead of four)
        self._walk = list(zip(range(len(self.steps)), self.steps, self.ops, self.fixed, self.keys, self.resizes))
        # output steps (to_tensor, normalize) close the chain: the pixel steps run before them
        self.outputs_from = next((i for i, op in enumerate(self.ops) if isinstance(op, OutputOp)), len(self.ops))
        for i in range(self.outputs_from, len(self.ops)):
            if not isinstance(self.ops[i], OutputOp):
                raise RecipeError(f"{self.where(i)}comes after the output step {self.steps[self.outputs_from].op!r}; "
                                  "to_tensor and normalize end a recipe, so move them to the end")
            if self.steps[i].p != 1.0:
                raise RecipeError(f"{self.where(i)}an output step always runs: give it p: 1 (got {self.steps[i].p})")

    @property
    def has_outputs(self) -> bool:
        return any(self.steps[i].enabled for i in range(self.outputs_from, len(self.ops)))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The output steps on pixels (``C x H x W`` or ``N x C x H x W``): the tensor training code takes."""
        batch = x if x.dim() == 4 else x[None]
        for i in range(self.outputs_from, len(self.ops)):
            if self.steps[i].enabled:
                batch = self.ops[i].convert(batch)
        return batch if x.dim() == 4 else batch[0]

    def where(self, i: int) -> str:
        return f"step {i + 1} ({self.steps[i].op}): "

    def sample(self, size: tuple[int, int], seed: int, item, copy: int) -> list[dict]:
        """The records (applied?, params) each step would use for this (seed, item, copy), without pixels.

        The size each step sees follows the chain (a crop changes it for later steps). ``item`` is keyed as
        ``keys.item_key`` spells it (``./a.png`` and ``a.png`` are the same item).
        """
        return self._sample(size, seed, item, copy)[0]

    def _sample(self, size: tuple[int, int], seed: int, item, copy: int) -> tuple[list[dict], tuple]:
        """``sample``'s records, and the indices of the pixel steps that apply (what ``_plan`` keys on)."""
        item = item_key(item)
        records, applied = [], []
        pixel_steps = self.outputs_from
        for i, step, op, fixed, key, resizes in self._walk:
            if not step.enabled:
                records.append({"step": i + 1, "op": step.op, "applied": False, "params": None})
                continue
            if fixed:
                on, params = True, {}
            else:
                gen = seeding.draws(seed, item, copy, key)  # generator()'s draws, cheaper
                # seeding.coin inlined for the usual Draws (a call layer less per step)
                on = gen.rand() < step.p if type(gen) is seeding.Draws else seeding.coin(gen, step.p)
                params = op.sample(gen, size) if on else None
            if on:
                if resizes:
                    size = tuple(op.output_size(size, params))
                if i < pixel_steps:
                    applied.append(i)
            records.append({"step": i + 1, "op": step.op, "applied": on, "params": params})
        return records, tuple(applied)

    def run(self, pic: Picture, seed: int, item=0, copy: int = 0) -> tuple[Picture, list[dict]]:
        x = pic.pixels
        # pic.size and replay() inlined: each call layer costs ~0.5 us between other work; the steps that
        # ran come back from the sampling, so the plan needs no second walk over the records
        records, applied = self._sample(tuple(x.shape[-2:]), seed, item, copy)
        return pic.with_pixels(self._replay_one(x, records, pic.kind, None, applied)), records

    def replay(self, pic: Picture, records: list[dict], fuse: bool | None = None) -> Picture:
        return pic.with_pixels(self._replay_one(pic.pixels, records, pic.kind, fuse))

    def run_batch(self, x: torch.Tensor, seed: int, items: list, copies: list[int], kind: str = "rgb",
                  fuse: bool | None = None) -> tuple[torch.Tensor, list[list[dict]]]:
        """``N x C x H x W`` uint8 (any device) -> (result, records per item) for (seed, items[i], copies[i])."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        records = [self.sample(size, seed, items[i], copies[i]) for i in range(x.shape[0])]
        return self.replay_batch(x, records, kind, fuse), records

    # -- targets (masks, boxes, keypoints) -------------------------------------------------------------
    def check_targets(self) -> None:
        """Refuse a chain with a step that cannot carry targets (AugMix), before any pixel moves."""
        check_steps(self.ops[:self.outputs_from], self.steps[:self.outputs_from], self.where)

    def replay_targets(self, targets: dict, records: list[dict], kind: str, size: tuple, options,
                       fuse: bool | None = None, log: list | None = None) -> dict:
        """Canonical targets (``base.targets``) of an image of ``size`` through the steps ``records`` applied,
        grouped exactly as the pixels were (a fused geometric run moves them by its one matrix). Boxes
        dropped and keypoints that left the image are appended to ``log`` (``engine.targets``)."""
        fuse = self.fuse if fuse is None else fuse
        todo = [(i, self.ops[i], rec["params"]) for i, rec in enumerate(records)
                if rec["applied"] and i < self.outputs_from]
        for group in (plan(todo, kind) if fuse else [[t] for t in todo]):
            targets = through_group(targets, group, kind, size, options, self.where, log)
            size = self._size_after(group, size)
        return targets

    # -- replay -----------------------------------------------------------------------------------------
    def _plan(self, recs: list[dict], kind: str, fuse: bool, applied: tuple | None = None) -> list[list]:
        # the grouping depends on which steps run (their ops, the kind), never on the drawn params: it is
        # made once per pattern of applied steps (``applied``, from ``_sample`` or the records) and filled
        # with each record's params (loops, not comprehensions: each of those is a call, ~0.3 us a call
        # between other libraries' work)
        if applied is None:
            pattern = []
            for i, rec in enumerate(recs):
                if rec["applied"] and i < self.outputs_from:
                    pattern.append(i)
            applied = tuple(pattern)
        key = (applied, kind, fuse)
        shape = self._plans.get(key)
        if shape is None:
            for i in applied:
                if kind == "categorical" and self.ops[i].categorical == "refuse":
                    raise self.ops[i].refuse_categorical(self.where(i))
            todo = [(i, self.ops[i], None) for i in applied]
            groups = plan(todo, kind) if fuse else [[t] for t in todo]
            shape = [[i for i, _, _ in g] for g in groups]
            if len(self._plans) >= 256:
                self._plans.clear()
            self._plans[key] = shape
        ops, groups = self.ops, []
        for g in shape:
            groups.append([(i, ops[i], recs[i]["params"]) for i in g] if len(g) > 1
                          else [(g[0], ops[g[0]], recs[g[0]]["params"])])
        return groups

    def _replay_one(self, x: torch.Tensor, recs: list[dict], kind: str, fuse: bool | None,
                    applied: tuple | None = None) -> torch.Tensor:
        """``replay_batch`` of one ``C x H x W`` item without the batch dimension: a lone step runs its op's
        ``apply`` (what its ``apply_batch`` does for a batch of one), a fused run its group. Measured: a
        call's fixed cost -12 us of 64 (four tensor views and the batch bookkeeping)."""
        for group in self._plan(recs, kind, self.fuse if fuse is None else fuse, applied):
            if len(group) == 1:  # _guard's work without its closure: a lone step is most calls' only group
                i, op, params = group[0]
                try:
                    x = op.apply(x, params, kind)
                except AugstudioError:
                    raise
                except Exception as e:
                    raise self._failure(e, [i], x, kind) from e
            else:
                x = self._guard(lambda group=group, x=x: run_group(x[None], [group], kind)[0],
                                [i for i, _, _ in group], x, kind)
        return x

    def replay_batch(self, x: torch.Tensor, records: list[list[dict]], kind: str,
                     fuse: bool | None = None) -> torch.Tensor:
        """Apply recorded params to ``N x C x H x W`` uint8 items (``records[j]`` for item j)."""
        fuse = self.fuse if fuse is None else fuse
        plans = [self._plan(recs, kind, fuse) for recs in records]
        if len(plans) == 1:  # one image: its groups in turn (what the partition below gives for one item)
            for group in plans[0]:
                x = self._guard(lambda group=group, x=x: run_group(x, [group], kind), [i for i, _, _ in group], x, kind)
            return x
        # items whose plans agree run together (all of them, for a single image)
        parts: dict[tuple, list[int]] = {}
        size = tuple(x.shape[-2:])
        for j, groups in enumerate(plans):
            parts.setdefault(self._signature(groups, kind, size), []).append(j)
        outs = {}
        for idx in parts.values():
            xs = x if len(idx) == x.shape[0] else x[idx]
            for k in range(len(plans[idx[0]])):
                groups = [plans[j][k] for j in idx]
                xs = self._guard(lambda groups=groups, xs=xs: run_group(xs, groups, kind),
                                 [i for i, _, _ in groups[0]], xs, kind)
            outs[tuple(idx)] = xs
        if len(outs) == 1:
            return next(iter(outs.values()))
        shapes = {tuple(o.shape[1:]) for o in outs.values()}
        if len(shapes) > 1:
            sizes = sorted({s[-2:] for s in shapes})
            raise RecipeError(f"the batch items end with different sizes {sizes}; add a fixed-size crop or "
                              "resize (with p: 1) so every item has the same output size")
        first = next(iter(outs.values()))
        out = torch.empty((x.shape[0], *first.shape[1:]), dtype=first.dtype, device=first.device)
        for idx, o in outs.items():
            out[list(idx)] = o
        return out

    def _signature(self, groups: list, kind: str, size: tuple) -> tuple:
        sig = []
        for g in groups:
            after = self._size_after(g, size)
            sig.append((signature(g, kind, size), after))  # items of one run must also keep one size
            size = after
        return tuple(sig)

    @staticmethod
    def _size_after(group: list, size: tuple) -> tuple:
        for _, op, params in group:
            size = tuple(op.output_size(size, params))
        return size

    def _guard(self, fn, idx: list[int], x, kind):
        try:
            return fn()
        except AugstudioError:
            raise
        except Exception as e:
            raise self._failure(e, idx, x, kind) from e

    def _failure(self, e: Exception, idx: list[int], x, kind) -> RecipeError:
        """The error naming the step(s) ``idx`` that raised ``e`` on ``x``."""
        where = self.where(idx[0]) if len(idx) == 1 else (
            "steps " + ", ".join(f"{i + 1} ({self.steps[i].op})" for i in idx) + " (fused): ")
        one = x.dim() == 3 or x.shape[0] == 1  # one C x H x W item, or a batch
        shape = tuple(x.shape[-2:]) if one else f"{tuple(x.shape[-2:])} (a batch of {x.shape[0]})"
        return RecipeError(f"{where}failed on a {kind} image of size {shape}: {type(e).__name__}: {e}")


__all__ = ["Pipeline"]
