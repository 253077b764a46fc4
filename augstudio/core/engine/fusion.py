"""The one fused runner: split a chain's applied steps into groups and run each group on ``N`` items at once.
A single image is a batch of one; ``Pipeline`` gives every item its own plan and runs the items whose plans
are the same together, so the per-image and the batched paths are this code and nothing else.

Fusion:

* A run of consecutive geometric steps is multiplied into one affine matrix and the image is resampled
  once (``kernels.warp``), sampling only the output pixels: faster, and sharper than resampling per step.
  Steps that draw pixels from outside the image must agree on the border (padding_mode, fill); a
  disagreement ends the run. Interpolation of a run (per item): nearest if the picture is categorical or
  any step asks for nearest, else bicubic if any asks for it, else bilinear (exact pixel moves such as flips
  and crops do not count).
* *Pointwise* steps (``PointwiseOp``: brightness, contrast, saturation, hue, colour jitter, gamma, ...) that
  sit *between* geometric steps are moved after the run, so the run still resamples once and the colour
  work is done on the (usually smaller) output. Image statistics they need (contrast's mean grey) are
  measured on a small nearest probe of the image as it is at the step's own place in the chain, so they
  match torchvision's semantics closely (fill pixels from a rotation count, as they do op by op). The
  result equals the op-by-op result within interpolation tolerance (tests/core/test_fusion.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augstudio.core.kernels import warp as W
from augstudio.core.ops.base import PointwiseOp
from augstudio.core.ops.geometry import GeometricOp

PROBE_SIDE = 64  # longest side of the probe image used to measure statistics of moved colour steps
_RANK = {"nearest": 0, "bicubic": 1, "bilinear": 2}


def plan(todo: list, kind: str) -> list[list]:
    """Split the applied steps ``[(index, op, params)]`` into groups; a group of 2+ is run as one warp."""
    groups: list[list] = []
    k = 0
    n = len(todo)
    while k < n:
        op = todo[k][1]
        if not isinstance(op, GeometricOp):
            groups.append([todo[k]])
            k += 1
            continue
        group = [todo[k]]
        border = _border_of(op)
        j = k + 1
        last_geo = 0
        while j < n:
            op_j = todo[j][1]
            if isinstance(op_j, GeometricOp):
                b = _border_of(op_j)
                if b is not None and border is not None and b != border:
                    break
                border = border or b
                group.append(todo[j])
                last_geo = len(group) - 1
            elif isinstance(op_j, PointwiseOp) and kind != "categorical":
                group.append(todo[j])
            else:
                break
            j += 1
        group = group[:last_geo + 1]  # colour steps after the last geometric step run normally
        groups.append(group)
        k += len(group)
    return groups


def _border_of(op: GeometricOp):
    return op.border() if op.samples_outside else None


@dataclass
class GroupPlan:
    """One item's geometry for a fused group: the matrix, output size, interpolation, border, and for every
    moved pointwise step the matrix and size of the image at its own place in the chain."""

    matrix: tuple
    size: tuple
    interp: str
    mode: str
    fill: object
    deferred: list  # (op, params, matrix before it, size before it)


_RECENT: dict = {}  # id(group) -> (group, kind, size_in, plan): signature() plans a group, run_group() reuses it


def group_plan(group: list, kind: str, size_in: tuple) -> GroupPlan:
    hit = _RECENT.get(id(group))
    if hit is not None and hit[0] is group and hit[1] == kind and hit[2] == size_in:
        return hit[3]
    plan_ = _group_plan(group, kind, size_in)
    if len(_RECENT) >= 64:
        _RECENT.clear()
    _RECENT[id(group)] = (group, kind, size_in, plan_)  # the group is held, so its id is not reused meanwhile
    return plan_


def _group_plan(group: list, kind: str, size_in: tuple) -> GroupPlan:
    size = size_in
    m = W.IDENTITY
    mode, fill = "edge", 0  # until a step that reaches outside says otherwise
    asked = set()
    deferred = []
    for _, op, params in group:
        if isinstance(op, GeometricOp):
            mi, size = op.affine(params, size)
            m = W.matmul(mi, m)
            interp = op.interp()
            if interp is not None and not W.is_integer_map(mi):
                asked.add(interp)
            if op.samples_outside:
                mode, fill = op.border()
        else:
            deferred.append((op, params, m, size))
    if kind == "categorical" or not asked or W.is_integer_map(m):
        interp = "nearest"
    else:
        interp = min(asked, key=lambda s: _RANK[s])
    return GroupPlan(m, tuple(size), interp, mode, fill, deferred)


def signature(group: list, kind: str, size_in: tuple) -> tuple:
    """What must be equal for items to run one group together: its steps and, for a fused run, the
    interpolation (the border and the output size follow from the steps)."""
    steps = tuple(i for i, _, _ in group)
    if len(group) == 1:
        return steps
    return steps + (group_plan(group, kind, size_in).interp,)


def run_group(x: torch.Tensor, groups: list[list], kind: str) -> torch.Tensor:
    """Run one group on ``N x C x H x W`` uint8 ``x``: ``groups[j]`` is item j's group (the same steps for
    every item, each with the item's own params)."""
    first = groups[0]
    if len(first) == 1:
        op = first[0][1]
        return op.apply_batch(x, [g[0][2] for g in groups], kind)
    size_in = tuple(x.shape[-2:])
    plans = [group_plan(g, kind, size_in) for g in groups]
    gp = plans[0]
    # the warp first: its merge reads the input row by row, in the order the hardware prefetches, so the
    # probes' strided reads after it find those rows in cache (before it, they waited on memory for each
    # sampled row of an input another library's call had pushed out: ~0.17 ms of a cold call)
    out = W.warp_batch(x, [p.matrix for p in plans], gp.size, gp.interp, gp.fill, gp.mode)
    # statistics of moved colour steps, measured per item on a probe at each step's own place in the chain
    needs = [[op.needs_stats(params) for op, params, _, _ in p.deferred] for p in plans]
    stats = [[None] * len(gp.deferred) for _ in plans]
    for j, p in enumerate(plans):
        for k, (op, params, mk, sk) in enumerate(p.deferred):
            if not needs[j][k]:
                continue
            probe = _probe(x[j], mk, sk, p.mode, p.fill)
            for (op_e, params_e, _, _), st in zip(p.deferred[:k], stats[j]):
                probe = op_e.apply(probe, params_e, kind, stats=st)
            stats[j][k] = op.stats(probe, params, kind)
    for k, (op, _, _, _) in enumerate(gp.deferred):
        out = op.apply_batch(out, [p.deferred[k][1] for p in plans], kind, stats=[s[k] for s in stats])
    return out


def _probe(x, m, size, mode, fill):
    h, w = size
    s = min(1.0, PROBE_SIDE / max(h, w))
    ph, pw = max(1, round(h * s)), max(1, round(w * s))
    # output probe pixel (u, v) samples the intermediate image at its grid position
    down = W.box_to_size(0, 0, h, w, (ph, pw))
    return W.probe(x, W.matmul(down, m), (ph, pw), fill, mode)


__all__ = ["plan", "run_group", "signature", "group_plan", "GroupPlan", "PROBE_SIDE"]
