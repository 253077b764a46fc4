"""The batched device path: run a recipe's per-image steps on a whole ``N x C x H x W`` uint8 batch on any
device (GPU training, fast export), with per-item random parameters from the same seed path as the
per-image pipeline, so item ``i`` of the batch equals ``Recipe.apply`` for the same (item, copy) within
interpolation tolerance.

One kernel per op for the whole batch: a run of geometric steps becomes one ``warp_batch`` with one
matrix per item (items that skipped a step get the identity); colour and noise steps run through their
op's ``apply_batch`` on the items that drew them. All items of a batch share the input size, and crops
must bring them to one output size.
"""

from __future__ import annotations

import torch

from augstudio.core.base.errors import RecipeError
from augstudio.core.kernels import warp as W

from .pipeline import _RANK, _is_geo, _probe, plan


def apply_batch(recipe, x: torch.Tensor, items, copies=0, kind: str = "rgb", fuse: bool = True):
    """Apply ``recipe`` to a uint8 batch ``x`` (``N x C x H x W``, any device).

    ``items``: the item keys (one per image, as given to ``Recipe.apply``); ``copies``: one int for all or
    one per image. Returns ``(out, records)`` with ``records[i]`` the per-step records of item ``i``.
    """
    if x.dim() != 4 or x.dtype != torch.uint8:
        raise RecipeError(f"apply_batch needs a uint8 N x C x H x W tensor, got {x.dtype} of shape {tuple(x.shape)}")
    n = x.shape[0]
    items = list(items)
    if len(items) != n:
        raise RecipeError(f"apply_batch: {n} images but {len(items)} item keys; give one key per image")
    copies = [int(copies)] * n if isinstance(copies, int) else [int(c) for c in copies]
    pipe = recipe.pipeline()
    size = (int(x.shape[-2]), int(x.shape[-1]))
    records = [pipe.sample(size, recipe.seed, items[i], copies[i]) for i in range(n)]
    for i, op in enumerate(pipe.ops):
        if kind == "categorical" and op.categorical == "refuse" and any(r[i]["applied"] for r in records):
            raise op.refuse_categorical(pipe.where(i))
    steps = [(i, op, None) for i, op in enumerate(pipe.ops) if pipe.steps[i].enabled]
    groups = plan(steps, kind) if fuse else [[s] for s in steps]
    for group in groups:
        try:
            if len(group) == 1 and not _is_geo(group[0][1]):
                x = _run_single(x, group[0][0], group[0][1], records, kind)
            else:
                x = _run_group(x, group, records, kind)
        except RecipeError:
            raise
        except Exception as e:
            names = ", ".join(f"{i + 1} ({pipe.steps[i].op})" for i, _, _ in group)
            raise RecipeError(f"batched steps {names}: failed on a batch of shape {tuple(x.shape)}: "
                              f"{type(e).__name__}: {e}") from e
    return x, records


def _run_single(x, i, op, records, kind):
    idx = [j for j, r in enumerate(records) if r[i]["applied"]]
    if not idx:
        return x
    params = [records[j][i]["params"] for j in idx]
    if len(idx) == x.shape[0]:
        return op.apply_batch(x, params, kind)
    sub = op.apply_batch(x[idx], params, kind)
    if sub.shape[1:] != x.shape[1:]:
        raise RecipeError(f"step {i + 1} ({op.name}) changes the image size on some items of the batch only; "
                          "give it p: 1 or move it after a fixed-size crop")
    out = x.clone()
    out[idx] = sub
    return out


def _run_group(x, group, records, kind):
    n = x.shape[0]
    size_in = (int(x.shape[-2]), int(x.shape[-1]))
    mats, sizes = [], []
    deferred: list[list] = [[] for _ in range(n)]  # per item: (op, step index, matrix, size) in order
    asked = set()
    mode, fill = "edge", 0  # until a step that reaches outside says otherwise
    for j in range(n):
        m, size = W.IDENTITY, size_in
        for i, op, _ in group:
            rec = records[j][i]
            if not rec["applied"]:
                continue
            if _is_geo(op):
                mi, size = op.affine(rec["params"], size)
                m = W.matmul(mi, m)
                if op.interp() is not None and not W.is_integer_map(mi):
                    asked.add(op.interp())
                if op.samples_outside:
                    mode, fill = op.border()
            else:
                deferred[j].append((op, i, m, size))
        mats.append(m)
        sizes.append(tuple(size))
    if len(set(sizes)) > 1:
        raise RecipeError(f"the batch items end with different sizes {sorted(set(sizes))}; add a fixed-size "
                          "crop or resize (with p: 1) so every item has the same output size")
    if kind == "categorical" or not asked:
        interp = "nearest"
    else:
        interp = min(asked, key=lambda s: _RANK[s])
    if all(W.is_integer_map(m) for m in mats):
        interp = "nearest"
    out = W.warp_batch(x, mats, sizes[0], interp, fill, mode)
    # moved pointwise colour steps, in chain order, each on the items that drew it
    stats = [dict() for _ in range(n)]  # item -> step index -> stats
    for i, op, _ in group:
        if _is_geo(op):
            continue
        idx = [j for j in range(n) if records[j][i]["applied"]]
        if not idx:
            continue
        params = [records[j][i]["params"] for j in idx]
        if any(op.needs_stats(p) for p in params):
            st = []
            for j in idx:
                k = next(k for k, d in enumerate(deferred[j]) if d[1] == i)
                _, _, mk, sk = deferred[j][k]
                probe = _probe(x[j], mk, sk, mode, fill)
                for op_e, i_e, _, _ in deferred[j][:k]:
                    probe = op_e.apply(probe, records[j][i_e]["params"], kind, stats=stats[j].get(i_e))
                stats[j][i] = op.stats(probe, records[j][i]["params"], kind)
                st.append(stats[j][i])
            sub = op.apply_batch(out[idx], params, kind, stats=st)
        else:
            sub = op.apply_batch(out[idx], params, kind)
        if len(idx) == n:
            out = sub
        else:
            out[idx] = sub
    return out


__all__ = ["apply_batch"]
