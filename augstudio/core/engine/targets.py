"""Masks, boxes and keypoints through a recipe's per-image steps (the contract is ``base.targets``).

Every step's effect on targets follows from what the op is (``ops.target_effects``):

* geometry moves targets by the very matrix that moves the pixels, and a fused run of geometric steps by
  the run's one matrix (so a rotation then a rotation is one enclosing box, not two). Masks are resampled
  nearest (labels never blend) with the image's border mode; pixels from outside the image become
  ``fill_mask`` (default the ``ignore_index``) in a class mask, 0 in instance masks. Boxes become the
  enclosing box of their moved corners, clipped to the image; a box is dropped when it left the image, or
  when less than ``min_visibility`` of it (area after clipping / before) or less than ``min_area`` pixels
  remain (``box_mode: pixels``: the box around the pixels a mask of the box keeps instead, tight at tilted
  corners). Keypoints move exactly; ``keypoint_visible`` turns False once one leaves the image.
* erasing writes ``ignore_index`` into a class mask (0 into instance masks) where it erased, and with
  ``drop_erased_boxes`` drops the boxes it hid completely.
* containers and policies: each nested step / drawn sub-op that ran, in order.
* AugMix and the mixing batch ops are refused: their pixels blend differently moved copies or two images.

Records are the ones the pixels used (``Pipeline.sample``), so targets always match the pixels.
"""

from __future__ import annotations

import math

import torch

from augstudio.core.base.errors import RecipeError
from augstudio.core.kernels import warp as W
from augstudio.core.ops.geometry import GeometricOp
from augstudio.core.ops.target_effects import target_effect

from .fusion import group_plan
from .target_options import TargetOptions


# -- which steps may run with targets ---------------------------------------------------------------------
def check_steps(ops: list, steps: list, where) -> None:
    """Refuse, before any pixel moves, a chain with a step whose effect on targets is undefined."""
    for i, (op, step) in enumerate(zip(ops, steps)):
        if step.enabled:
            _check_op(op, where(i))


def _check_op(op, where: str) -> None:
    effect = target_effect(type(op))
    if effect == "refuse":
        raise RecipeError(f"{where}op '{op.name}' cannot carry masks, boxes or keypoints: "
                          + _REFUSE_WHY.get(op.name, "its pixels blend images moved differently") +
                          ". Remove the step for this dataset, or apply it without targets.")
    if effect == "nested":
        for k, (sub, s) in enumerate(zip(op.nested, op.steps)):
            if s.enabled:
                _check_op(sub, f"{where}nested step {k + 1}: ")


_REFUSE_WHY = {
    "augmix": "it blends the image with copies moved by different random geometry, so no one mask or box "
              "matches the result",
}


# -- per step ---------------------------------------------------------------------------------------------
def through_group(t: dict, group: list, kind: str, size: tuple, opts: TargetOptions, where,
                  log: list | None = None) -> dict:
    """Targets through one group of ``fusion.plan`` (a single step, or a fused geometric run). What was
    dropped or left the image is appended to ``log`` (``{"step", "box" | "keypoint", "reason"}``; the
    index is the one first given, ``box_index``), the step being the group's last."""
    if not t:
        return t
    seen = len(log) if log is not None else 0
    if len(group) == 1:
        i, op, params = group[0]
        t = through_op(t, op, params, size, opts, where(i), log)
    else:
        gp = group_plan(group, kind, size)
        t = move(t, gp.matrix, size, gp.size, gp.mode, None, opts, log)
    for entry in (log[seen:] if log is not None else []):
        entry.setdefault("step", group[-1][0] + 1)
    return t


def through_op(t: dict, op, params, size: tuple, opts: TargetOptions, where: str = "", log: list | None = None) -> dict:
    effect = target_effect(type(op))
    if effect == "geometric":
        m, out = op.affine(params, size)
        return move(t, m, size, tuple(out), op.border()[0], op.clip(params, size), opts, log)
    if effect == "erase":
        return erase(t, op.boxes(params), opts, log)
    if effect == "nested":
        for r in params["runs"]:
            if r["applied"]:
                sub = op.nested[r["index"]]
                t = through_op(t, sub, r["params"], size, opts, f"{where}nested step {r['index'] + 1}: ", log)
                size = tuple(sub.output_size(size, r["params"]))
        return t
    if effect == "policy":
        return _through_policy(t, params, size, opts, log)
    if effect == "refuse":
        _check_op(op, where)
    return t  # keep


def _through_policy(t: dict, params: dict, size: tuple, opts: TargetOptions, log) -> dict:
    from augstudio.core.ops.policy import sub_instance  # deferred: policy tables on first use

    for s in params.get("ops", []):
        if s is None or s["op"] is None:
            continue
        op = sub_instance(s["op"], s["values"])
        if not isinstance(op, GeometricOp):
            continue
        m, out = op.affine(s["params"], size)
        if s.get("shift"):  # the policy's corner shear: the sub-op's matrix, then a shift (as run_subs does)
            m = W.matmul(W.translation(*s["shift"]), m)
        t = move(t, m, size, tuple(out), op.border()[0], None if s.get("shift") else op.clip(s["params"], size),
                 opts, log)
        size = tuple(out)
    return t


# -- the moves --------------------------------------------------------------------------------------------
def move(t: dict, m, size: tuple, out: tuple, mode: str, clip, opts: TargetOptions, log: list | None = None) -> dict:
    """Targets of an image of ``size`` moved by forward matrix ``m`` (pixel-centre frame, ``kernels.warp``)
    into an image of ``out``."""
    t = dict(t)
    if "mask" in t:
        t["mask"] = _warp_mask(t["mask"], m, out, mode, clip, opts)
    if "boxes" in t:
        t["boxes"], keep, why = _move_boxes(t["boxes"], m, out, opts)
        t = _keep_boxes(t, keep, why, log)
    if "keypoints" in t:
        k = _apply(m, t["keypoints"])
        was = t["keypoint_visible"]
        t["keypoints"] = k
        t["keypoint_visible"] = was & _inside(k, out)
        if log is not None:
            log.extend({"keypoint": int(i), "reason": "left the image"}
                       for i in torch.nonzero(was & ~t["keypoint_visible"]).flatten().tolist())
    return t


def _keep_boxes(t: dict, keep: torch.Tensor, why: list, log: list | None) -> dict:
    """Keep the boxes ``keep`` marks, with their labels, source indices and (one slice per box) instance
    masks; log the others with ``why[n]``."""
    if bool(keep.all()):
        return t
    n = len(t["boxes"])
    if "mask" in t and t["mask"].dim() == 3 and t["mask"].shape[0] == n:
        t["mask"] = t["mask"][keep]
    if log is not None:
        log.extend({"box": int(t["box_index"][i]), "reason": why[i]}
                   for i in torch.nonzero(~keep).flatten().tolist())
    for k in ("boxes", "box_labels", "box_index"):
        t[k] = t[k][keep]
    return t


def _apply(m, pts: torch.Tensor) -> torch.Tensor:
    """Points in the pixel-edge frame (targets) through ``m`` (pixel-centre frame), in float64."""
    if pts.numel() == 0:
        return pts.clone()
    mat = torch.tensor([m[0], m[1]], dtype=torch.float64, device=pts.device)
    p = pts.to(torch.float64) - 0.5
    q = p @ mat[:, :2].T + mat[:, 2]
    return (q + 0.5).to(pts.dtype)


def _inside(k: torch.Tensor, size: tuple) -> torch.Tensor:
    h, w = size
    return (k[:, 0] >= 0) & (k[:, 0] < w) & (k[:, 1] >= 0) & (k[:, 1] < h)


def _move_boxes(b: torch.Tensor, m, out: tuple, opts: TargetOptions):
    """Each box's corners through ``m``; the new box is the bounding box of the part of the moved box that
    lies in the image (for a tilted box cut by the image edge, tighter than the clipped enclosing box).
    Returns (boxes, keep, why) with why[n] saying why box n is dropped."""
    if b.numel() == 0:
        return b.clone(), torch.zeros(0, dtype=torch.bool, device=b.device), []
    quad = torch.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], dim=1)  # N x 4 x 2, in order
    moved = _apply(m, quad.reshape(-1, 2)).reshape(-1, 4, 2).to(torch.float64)
    h, w = out
    whole = torch.cat([moved.min(dim=1).values, moved.max(dim=1).values], dim=1)
    if bool(((whole[:, :2] >= 0) & (whole[:, 2:] <= torch.tensor([w, h], dtype=whole.dtype,
                                                                  device=whole.device))).all()):
        box, found = whole, torch.ones(len(b), dtype=torch.bool, device=b.device)  # every box inside: as is
    else:
        box, found = _visible_bbox(moved, float(w), float(h))
    full = (whole[:, 2] - whole[:, 0]) * (whole[:, 3] - whole[:, 1])
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    left = ~found | ((area <= 0) & (full > 0))
    visibility = torch.where(full > 0, area / full.clamp_min(1e-12), torch.ones_like(full))
    empty = torch.zeros_like(left)
    if opts.box_mode == "pixels":
        box, held = _pixel_bbox(moved, w, h)
        empty = ~held & ~left
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    low_vis = visibility < opts.min_visibility - 1e-6
    small = area < opts.min_area
    why = ["left the image" if left[i] else
           "holds no pixel after the move" if empty[i] else
           f"visible {visibility[i]:.3f} < min_visibility {opts.min_visibility}" if low_vis[i] else
           f"area {area[i]:.1f} px < min_area {opts.min_area}" if small[i] else ""
           for i in range(len(b))]
    return box.to(b.dtype), ~(left | empty | low_vis | small), why


def _pixel_bbox(quad: torch.Tensor, w: int, h: int):
    """``box_mode: pixels``: the bounding box (pixel edges) of the output pixels whose centres lie in the
    moved box ``quad`` (N x 4 x 2, convex) — the pixels a nearest-resampled mask of the box keeps — and
    whether there is any. Row by row: where the row's centre line crosses the quad's edges."""
    n = quad.shape[0]
    r0 = max(0, int(math.floor(float(quad[..., 1].min()))))  # only the rows some box reaches
    r1 = min(h, int(math.ceil(float(quad[..., 1].max()))) + 1)
    rows = torch.arange(r0, max(r0, r1), dtype=quad.dtype, device=quad.device)
    if rows.numel() == 0:
        return torch.zeros((n, 4), dtype=quad.dtype, device=quad.device), torch.zeros(n, dtype=torch.bool,
                                                                                       device=quad.device)
    ys = rows + 0.5  # R row centres
    p, q = quad, quad.roll(-1, dims=1)  # N x 4 edges p -> q
    y0, y1 = p[..., 1, None], q[..., 1, None]  # N x 4 x 1
    lo_y, hi_y = torch.minimum(y0, y1), torch.maximum(y0, y1)
    crosses = (ys >= lo_y) & (ys <= hi_y) & (hi_y > lo_y)  # N x 4 x R
    t = (ys - y0) / torch.where(hi_y > lo_y, y1 - y0, torch.ones_like(y0))
    x = p[..., 0, None] + t * (q[..., 0, None] - p[..., 0, None])
    inf = torch.tensor(float("inf"), dtype=quad.dtype, device=quad.device)
    xl = torch.where(crosses, x, inf).min(dim=1).values  # N x R
    xr = torch.where(crosses, x, -inf).max(dim=1).values
    u0 = torch.ceil(xl - 0.5).clamp_min(0)  # first and last column whose centre is inside
    u1 = torch.floor(xr - 0.5).clamp_max(w - 1)
    row = u1 >= u0
    held = row.any(dim=1)
    rows = rows.expand(n, -1)
    box = torch.stack([torch.where(row, u0, inf).min(dim=1).values, torch.where(row, rows, inf).min(dim=1).values,
                       torch.where(row, u1, -inf).max(dim=1).values + 1,
                       torch.where(row, rows, -inf).max(dim=1).values + 1], dim=1)
    return torch.where(held[:, None], box, torch.zeros_like(box)), held


def _visible_bbox(quad: torch.Tensor, w: float, h: float):
    """Bounding box of (convex quadrilateral ``quad`` N x 4 x 2 ∩ [0, w] x [0, h]) and whether it is
    non-empty: from the quad's corners inside the image, the image's corners inside the quad, and where
    the quad's edges cross the image's edges."""
    n = quad.shape[0]
    pts, ok = [quad], [(quad[..., 0] >= 0) & (quad[..., 0] <= w) & (quad[..., 1] >= 0) & (quad[..., 1] <= h)]
    rect = torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]], dtype=quad.dtype, device=quad.device)
    p, q = quad, quad.roll(-1, dims=1)  # edges p -> q
    d = q - p
    cross = d[:, None, :, 0] * (rect[None, :, None, 1] - p[:, None, :, 1]) - \
        d[:, None, :, 1] * (rect[None, :, None, 0] - p[:, None, :, 0])  # N x 4 corners x 4 edges
    eps = 1e-9
    proper = (d.abs().sum(-1) > eps).all(dim=1)[:, None]  # a degenerate (flat) quad holds no corner
    within = ((cross >= -eps).all(-1) | (cross <= eps).all(-1)) & proper
    pts.append(rect[None].expand(n, 4, 2))
    ok.append(within)
    for axis, value in ((0, 0.0), (0, w), (1, 0.0), (1, h)):
        other = 1 - axis
        denom = d[..., axis]
        t = (value - p[..., axis]) / torch.where(denom.abs() > eps, denom, torch.ones_like(denom))
        y = p[..., other] + t * d[..., other]
        hit = (denom.abs() > eps) & (t >= 0) & (t <= 1) & (y >= 0) & (y <= (h if other == 1 else w))
        xy = torch.stack([torch.full_like(y, value), y] if axis == 0 else [y, torch.full_like(y, value)], dim=-1)
        pts.append(xy)
        ok.append(hit)
    pts_all, ok_all = torch.cat(pts, dim=1), torch.cat(ok, dim=1)
    big = torch.tensor(float("inf"), dtype=quad.dtype, device=quad.device)
    lo = torch.where(ok_all[..., None], pts_all, big).min(dim=1).values
    hi = torch.where(ok_all[..., None], pts_all, -big).max(dim=1).values
    found = ok_all.any(dim=1)
    box = torch.cat([lo, hi], dim=1)
    box = torch.where(found[:, None], box, torch.zeros_like(box))
    return box, found


def _warp_mask(mask: torch.Tensor, m, out: tuple, mode: str, clip, opts: TargetOptions) -> torch.Tensor:
    """Nearest resampling of an int64 mask through the image's matrix, exact for any value: the mask is split
    into bytes (uint8 planes) for the warp kernel and put back together."""
    layers = mask[None] if mask.dim() == 2 else mask
    if layers.numel() and int(layers.min()) < 0:
        raise RecipeError("targets['mask'] holds negative values; masks hold class ids >= 0 (use the recipe's "
                          "targets: ignore_index for pixels to ignore)")
    fill = opts.outside_value if mask.dim() == 2 else 0
    top = max(int(layers.max()) if layers.numel() else 0, fill)
    nbytes = max(1, (top.bit_length() + 7) // 8)
    shifts = torch.arange(nbytes, device=mask.device) * 8
    planes = ((layers[:, None] >> shifts.view(1, -1, 1, 1)) & 255).to(torch.uint8)  # L x B x H x W
    planes = planes.reshape(-1, *layers.shape[-2:])
    fills = [(fill >> (8 * k)) & 255 for k in range(nbytes)] * layers.shape[0]
    moved = W.warp(planes, m, out, "nearest", fills, mode, antialias=False, clip=clip)
    moved = moved.reshape(layers.shape[0], nbytes, *out).to(torch.int64)
    result = (moved << shifts.view(1, -1, 1, 1)).sum(dim=1)
    return result[0] if mask.dim() == 2 else result


def erase(t: dict, boxes: list, opts: TargetOptions, log: list | None = None) -> dict:
    """Targets after erasing ``boxes`` ([top, left, height, width] in pixels)."""
    boxes = [b for b in boxes if b[2] > 0 and b[3] > 0]
    if not boxes:
        return t
    t = dict(t)
    if "mask" in t:
        mask = t["mask"].clone()
        value = opts.ignore_index if mask.dim() == 2 else 0
        for top, left, h, w in boxes:
            mask[..., top:top + h, left:left + w] = value
        t["mask"] = mask
    if "boxes" in t and opts.drop_erased_boxes and len(t["boxes"]):
        keep = ~_fully_erased(t["boxes"], boxes)
        t = _keep_boxes(t, keep, ["fully erased"] * len(keep), log)
    return t


def _fully_erased(b: torch.Tensor, erased: list) -> torch.Tensor:
    """Which boxes have every pixel whose centre lies inside them erased."""
    h = max(int(b[:, 3].ceil().max()), max(e[0] + e[2] for e in erased), 1)
    w = max(int(b[:, 2].ceil().max()), max(e[1] + e[3] for e in erased), 1)
    hidden = torch.zeros((h, w), dtype=torch.bool, device=b.device)
    for top, left, eh, ew in erased:
        hidden[max(top, 0):top + eh, max(left, 0):left + ew] = True
    out = torch.zeros(len(b), dtype=torch.bool, device=b.device)
    for n, (x1, y1, x2, y2) in enumerate(b.tolist()):
        # pixels whose centres (c + 0.5) lie inside the box
        c0, c1 = max(0, math.ceil(x1 - 0.5)), math.floor(x2 - 0.5) + 1
        r0, r1 = max(0, math.ceil(y1 - 0.5)), math.floor(y2 - 0.5) + 1
        if r1 > r0 and c1 > c0:
            out[n] = bool(hidden[r0:r1, c0:c1].all())
    return out


__all__ = ["TargetOptions", "check_steps", "through_group", "through_op", "move", "erase"]
