"""Runs a recipe's per-image steps on one picture: sample each step's parameters from its own generator,
then apply them. Also replays recorded parameters (the GUI and the export manifest use that).

Fusion (``fuse=True``, the default everywhere: GUI, export and training use the same path):

* A run of consecutive geometric steps is multiplied into one affine matrix and the image is resampled
  once (``warp.py``), sampling only the output pixels: faster, and sharper than resampling per step.
  Steps that draw pixels from outside the image must agree on the border (padding_mode, fill); a
  disagreement ends the run. Interpolation of a run: nearest if the picture is categorical or any step
  asks for nearest, else bicubic if any asks for it, else bilinear (exact pixel moves such as flips and
  crops do not count).
* *Pointwise* colour steps (each output pixel depends on that input pixel and an image-wide statistic:
  brightness, contrast, saturation, hue, colour jitter, gamma, ...) that sit *between* geometric steps
  are moved after the run, so the run still resamples once and the colour work is done on the (usually
  smaller) output. Image statistics they need (contrast's mean grey) are measured on a small nearest
  probe of the image as it is at the step's own place in the chain, so they match torchvision's
  semantics closely (fill pixels from a rotation count, as they do op by op). The result equals the
  op-by-op result within interpolation tolerance (tests/core/test_fusion.py measures it).

Records are never changed by fusion: one record per step, exactly as ``sample`` made it.
"""

from __future__ import annotations

from collections import Counter

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.io.images import Picture
from augstudio.core.kernels import warp as W

from .recipe import Step

PROBE_SIDE = 128  # longest side of the probe image used to measure statistics of moved colour steps


def stream_keys(steps: list[Step]) -> list[str]:
    """A generator stream per step, keyed by op name and occurrence ("rotate#0"), so adding or editing a
    different step does not reroll this one."""
    seen: Counter = Counter()
    keys = []
    for s in steps:
        keys.append(f"{s.op}#{seen[s.op]}")
        seen[s.op] += 1
    return keys


def _is_geo(op) -> bool:
    return bool(getattr(op, "affine", None)) and getattr(op, "family", "") == "geometry"


def _is_pointwise(op) -> bool:
    return bool(getattr(op, "pointwise", False))


_RANK = {"nearest": 0, "bicubic": 1, "bilinear": 2}


class Pipeline:
    def __init__(self, steps: list[Step], fuse: bool = True):
        from augstudio.core.ops import get_op

        self.steps = list(steps)
        self.fuse = fuse
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

    # -- replay -----------------------------------------------------------------------------------------
    def replay(self, pic: Picture, records: list[dict], fuse: bool | None = None) -> Picture:
        kind = pic.kind
        todo = [(i, self.ops[i], rec["params"]) for i, rec in enumerate(records) if rec["applied"]]
        for i, op, _ in todo:
            if kind == "categorical" and op.categorical == "refuse":
                raise op.refuse_categorical(self.where(i))
        x = pic.pixels
        groups = plan(todo, kind) if (self.fuse if fuse is None else fuse) else [[t] for t in todo]
        for group in groups:
            if len(group) == 1:
                i, op, params = group[0]
                x = self._guard(lambda op=op, params=params, x=x: op.apply(x, params, kind), [i], x, kind)
            else:
                x = self._guard(lambda group=group, x=x: run_group(x, group, kind), [g[0] for g in group], x, kind)
        return pic.with_pixels(x)

    def _guard(self, fn, idx: list[int], x, kind):
        try:
            return fn()
        except AugstudioError:
            raise
        except Exception as e:
            where = self.where(idx[0]) if len(idx) == 1 else (
                "steps " + ", ".join(f"{i + 1} ({self.steps[i].op})" for i in idx) + " (fused): ")
            raise RecipeError(f"{where}failed on a {kind} image of size "
                              f"{tuple(x.shape[-2:])}: {type(e).__name__}: {e}") from e


def _border_of(op):
    return op.border() if op.samples_outside else None


def plan(todo: list, kind: str) -> list[list]:
    """Split the applied steps into groups; a group of 2+ is run by ``run_group`` (one resampling)."""
    groups: list[list] = []
    k = 0
    n = len(todo)
    while k < n:
        i, op, params = todo[k]
        if not _is_geo(op):
            groups.append([todo[k]])
            k += 1
            continue
        group = [todo[k]]
        border = _border_of(op)
        j = k + 1
        last_geo = 0
        while j < n:
            op_j = todo[j][1]
            if _is_geo(op_j):
                b = _border_of(op_j)
                if b is not None and border is not None and b != border:
                    break
                border = border or b
                group.append(todo[j])
                last_geo = len(group) - 1
            elif _is_pointwise(op_j) and kind != "categorical":
                group.append(todo[j])
            else:
                break
            j += 1
        group = group[:last_geo + 1]  # colour steps after the last geometric step run normally
        groups.append(group)
        k += len(group)
    return groups


def _interp(geos: list, kind: str, size_in) -> str:
    if kind == "categorical":
        return "nearest"
    asked = set()
    size = size_in
    for op, params in geos:
        m, out = op.affine(params, size)
        if op.interp() is not None and not W.is_integer_map(m):
            asked.add(op.interp())
        size = out
    if not asked:
        return "nearest"
    return min(asked, key=lambda s: _RANK[s])


def run_group(x, group: list, kind: str):
    """Run a fusable group: geometric steps as one warp, pointwise colour steps after it."""
    size = tuple(x.shape[-2:])
    m = W.IDENTITY
    mode, fill = "edge", 0  # until a step that reaches outside says otherwise
    geos = []
    deferred = []  # (op, params, matrix before it, size before it)
    for _, op, params in group:
        if _is_geo(op):
            mi, size = op.affine(params, size)
            m = W.matmul(mi, m)
            geos.append((op, params))
            if op.samples_outside:
                mode, fill = op.border()
        else:
            deferred.append((op, params, m, size))
    interp = _interp(geos, kind, tuple(x.shape[-2:]))
    if W.is_integer_map(m):
        interp = "nearest"
    # statistics of moved colour steps, measured on a probe at each step's own place in the chain
    stats = []
    xs = x  # the source of the warps: converted to float once when a probe warps it too
    if x.device.type == "cpu" and any(op.needs_stats(params) for op, params, _, _ in deferred):
        xs = x.to(torch.float32)
    for k, (op, params, mk, sk) in enumerate(deferred):
        if not op.needs_stats(params):
            stats.append(None)
            continue
        probe = _probe(xs, mk, sk, mode, fill, as_float=k == 0 and _float_ok(op, x, kind))
        for (op_e, params_e, _, _), st in zip(deferred[:k], stats):
            probe = op_e.apply(probe, params_e, kind, stats=st)
        stats.append(op.stats(probe, params, kind))
    # the first moved colour step takes the warp's float result directly when it works in float anyway
    # (same whole numbers as the uint8 result, without the uint8 round trip)
    as_float = bool(deferred) and _float_ok(deferred[0][0], x, kind)
    out = W.warp(xs, m, size, interp, fill, mode, as_float=as_float)
    for (op, params, _, _), st in zip(deferred, stats):
        out = op.apply(out, params, kind, stats=st)
    return out


def _float_ok(op, x, kind) -> bool:
    """May ``op`` be handed the warp's float32 result (whole numbers 0..255) instead of uint8?"""
    return getattr(op, "accepts_float", False) and kind != "rgba" and x.shape[-3] != 4 and x.device.type == "cpu"


def _probe(x, m, size, mode, fill, as_float: bool = False):
    h, w = size
    s = min(1.0, PROBE_SIDE / max(h, w))
    ph, pw = max(1, round(h * s)), max(1, round(w * s))
    # output probe pixel (u, v) samples the intermediate image at its grid position
    down = W.box_to_size(0, 0, h, w, (ph, pw))
    return W.warp(x, W.matmul(down, m), (ph, pw), "nearest", fill, mode, as_float=as_float)
