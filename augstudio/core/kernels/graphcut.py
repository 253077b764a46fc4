"""A batched, pure-torch solver for small multi-label grid energies (PuzzleMix's mask problem).

Energy of a labelling ``x`` of an ``H x W`` grid (one problem per batch item)::

    E(x) = sum_p U[p, x_p] + sum_{vertical p~q} wv[p] * V[x_p, x_q] + sum_{horizontal p~q} wh[p] * V[x_p, x_q]

PuzzleMix's official code solves it per image with the GCO library's alpha-beta swap (a compiled
research-licensed library). Here the grids are tiny (at most 16 x 16 blocks, 3 labels), so:

* grids with at most 81 labellings per row (2x2 and 4x4 with 3 labels) are solved exactly by dynamic
  programming over whole-row states;
* larger grids use exact *line* moves: with every other row fixed, the best labelling of all even rows
  (then odd rows, then even / odd columns) is found exactly and at once from chain min-marginals (a
  parallel min-plus scan). A move is kept only where it lowers the energy; sweeps repeat until nothing
  changes (or ``max_sweeps``). The start is the solution of the half-size problem (labels constant on 2x2
  cells, an exact coarser energy) solved the same way, recursively (coarse to fine).

Everything is tensor ops over the whole batch, so it runs on CPU or CUDA. tests/core/test_puzzlemix.py
compares the energies with GCO's swap on 240 problems.
"""

from __future__ import annotations

import itertools

import torch


def grid_energy(labels, unary, wv, wh, pairwise):
    """Energy of ``labels`` (B, H, W) long for unary (B, H, W, L), wv (B, H-1, W), wh (B, H, W-1), V (L, L)."""
    u = unary.gather(-1, labels.unsqueeze(-1)).squeeze(-1).sum(dim=(1, 2))
    ev = (wv * pairwise[labels[:, :-1, :], labels[:, 1:, :]]).sum(dim=(1, 2))
    eh = (wh * pairwise[labels[:, :, :-1], labels[:, :, 1:]]).sum(dim=(1, 2))
    return u + ev + eh


def _minplus(a, b):
    """Min-plus matrix product of stacks laid out (T, L, L, M): out[t, i, j, m] = min_k a[t, i, k, m] + b[t, k, j, m].

    The chain index m is last (contiguous), so every op is a long vector op (fast on CPU and GPU).
    """
    out = a[:, :, 0].unsqueeze(2) + b[:, 0].unsqueeze(1)
    for k in range(1, a.shape[2]):
        out = torch.minimum(out, a[:, :, k].unsqueeze(2) + b[:, k].unsqueeze(1))
    return out


def _chain_min_marginals(cost, w, pairwise):
    """Min-marginals of independent chains by a parallel (Hillis-Steele) min-plus scan.

    cost (N, T, L) node costs; w (N, T-1) edge weights; pairwise (L, L). Returns (N, T, L): the lowest
    chain energy with node t at each label. log2(T) tensor steps each way instead of T sequential steps.
    """
    n, t, n_labels = cost.shape
    c = cost.permute(1, 2, 0).contiguous()  # (T, L, N)
    ww = w.t().contiguous()  # (T-1, N)
    # transfer matrices G_t[a, b] = w_{t-1} V[a, b] + cost_t[b], t = 1..T-1, laid out (T-1, L, L, N)
    g = ww[:, None, None, :] * pairwise[None, :, :, None] + c[1:, None, :, :]
    fwd = g
    d = 1
    while d < t - 1:
        fwd = torch.cat([fwd[:d], _minplus(fwd[:-d], fwd[d:])], 0)
        d *= 2
    # f_t[b] = min_a cost_0[a] + F_t[a, b]
    f0 = c[0]  # (L, N)
    ft = f0[0].unsqueeze(0) + fwd[:, 0]
    for a in range(1, n_labels):
        ft = torch.minimum(ft, f0[a].unsqueeze(0) + fwd[:, a])
    f = torch.cat([f0.unsqueeze(0), ft], 0)  # (T, L, N)
    bwd = g
    d = 1
    while d < t - 1:
        bwd = torch.cat([_minplus(bwd[:-d], bwd[d:]), bwd[-d:]], 0)
        d *= 2
    # bwd[t-1] = G_t (x) ... (x) G_{T-1}: what follows node t-1 is its min over the end label
    bt = bwd[:, :, 0]
    for j in range(1, n_labels):
        bt = torch.minimum(bt, bwd[:, :, j])
    b = torch.cat([bt, torch.zeros_like(c[:1])], 0)
    return (f + b).permute(2, 0, 1)


def _chain_energy(lab, cost, w, pairwise):
    return cost.gather(-1, lab.unsqueeze(-1)).squeeze(-1).sum(1) + (w * pairwise[lab[:, :-1], lab[:, 1:]]).sum(1)


def _row_move(labels, unary, wv_pad, wh, pairwise, parity):
    """Re-label every row with index % 2 == parity exactly, the other rows fixed; returns new labels.

    wv_pad (B, H+1, W) holds the vertical weights with a zero row at each end (so border rows need no
    special case): wv_pad[r] joins rows r-1 and r.
    """
    b, h, w, n_labels = unary.shape
    r = len(range(parity, h, 2))
    if r == 0:
        return labels
    lab_pad = torch.nn.functional.pad(labels, (0, 0, 1, 1))
    up = lab_pad[:, parity:parity + 2 * r:2]
    down = lab_pad[:, parity + 2:parity + 2 + 2 * r:2]
    cost = (unary[:, parity::2] + wv_pad[:, parity:parity + 2 * r:2, :, None] * pairwise[up]
            + wv_pad[:, parity + 1:parity + 1 + 2 * r:2, :, None] * pairwise[down])  # V symmetric
    old = labels[:, parity::2]
    if w == 1:
        new = cost.argmin(-1)
    else:
        c2 = cost.reshape(b * r, w, n_labels)
        w2 = wh[:, parity::2].reshape(b * r, w - 1)
        o2 = old.reshape(b * r, w)
        new = _chain_min_marginals(c2, w2, pairwise).argmin(-1)
        # with ties the per-node argmins may not form one optimal chain: keep a chain's old labels unless
        # the new ones are strictly better, so every move lowers the energy and the sweeps terminate
        e_new = _chain_energy(new, c2, w2, pairwise)
        e_old = _chain_energy(o2, c2, w2, pairwise)
        better = e_new < e_old - 1e-7 * e_old.abs().clamp_min(1e-6)
        new = torch.where(better.unsqueeze(-1), new, o2).reshape(b, r, w)
    out = labels.clone()
    out[:, parity::2] = new
    return out


def coarsen(unary, wv, wh):
    """The energy of labellings constant on 2x2 cells, as a grid of half the size (H, W even).

    Unaries of a cell add up; a coarse edge carries the two fine edges that cross it; edges inside a
    cell cost nothing (both ends share the label).
    """
    b, h, w, n_labels = unary.shape
    cu = unary.reshape(b, h // 2, 2, w // 2, 2, n_labels).sum(dim=(2, 4))
    cv = wv[:, 1::2, :].reshape(b, h // 2 - 1, w // 2, 2).sum(-1)
    ch = wh[:, :, 1::2].reshape(b, h // 2, 2, w // 2 - 1).sum(2)
    return cu, cv, ch


_STATES: dict = {}


def _row_states(w: int, n_labels: int, device):
    key = (w, n_labels, str(device))
    if key not in _STATES:
        _STATES[key] = torch.tensor(list(itertools.product(range(n_labels), repeat=w)), dtype=torch.long,
                                    device=device).reshape(-1, w)
    return _STATES[key]


def solve_exact_rows(unary, wv, wh, pairwise):
    """Exact minimum by dynamic programming over rows whose states are whole row labellings (L^W states;
    used when that is small, e.g. 2x2 and 4x4 grids with 3 labels)."""
    b, h, w, n_labels = unary.shape
    st = _row_states(w, n_labels, unary.device)  # (S, W)
    cols = torch.arange(w, device=unary.device)
    row_cost = unary[:, :, cols, st].sum(-1)  # (B, H, S)
    if w > 1:
        vh = pairwise[st[:, :-1], st[:, 1:]]  # (S, W-1)
        row_cost = row_cost + (wh[:, :, None, :] * vh).sum(-1)
    vv = pairwise[st[:, None, :], st[None, :, :]]  # (S, S, W)
    acc = row_cost[:, 0]
    back = []
    for r in range(1, h):
        trans = torch.einsum("bc,stc->bst", wv[:, r - 1], vv)
        best, arg = (acc[:, :, None] + trans).min(1)
        back.append(arg)
        acc = best + row_cost[:, r]
    cur = acc.argmin(-1)
    rows = [cur]
    for arg in reversed(back):
        cur = arg.gather(1, cur[:, None])[:, 0]
        rows.append(cur)
    return st[torch.stack(rows[::-1], 1)]  # (B, H, W)


def solve_grid(unary, wv, wh, pairwise, max_sweeps: int = 50, restarts: int = 0, gen: torch.Generator | None = None,
               coarse_to_fine: bool = True):
    """Minimise the grid energy for every batch item. Returns labels (B, H, W) long.

    Grids with at most 81 labellings per row (or column) are solved exactly (:func:`solve_exact_rows`).

    unary (B, H, W, L) float; wv (B, H-1, W); wh (B, H, W-1); pairwise (L, L) symmetric with zero diagonal.
    Starts from the unary minimum and, on grids of 8 x 8 and more, from the solution of the half-size
    problem (labels constant on 2x2 cells, solved the same way, recursively), else from the best constant
    labelling; ``restarts`` extra random starts (drawn from ``gen``) can be added. Each sweep re-labels even rows, odd rows, even columns, odd columns
    exactly; it stops when a sweep changes nothing.
    """
    unary = unary.float()
    b, h, w, n_labels = unary.shape
    dev = unary.device
    pairwise = pairwise.to(dev, torch.float32)
    wv = wv.to(dev, torch.float32).reshape(b, max(h - 1, 0), w)
    wh = wh.to(dev, torch.float32).reshape(b, h, max(w - 1, 0))
    if n_labels ** w <= 81:
        return solve_exact_rows(unary, wv, wh, pairwise)
    if n_labels ** h <= 81:
        return solve_exact_rows(unary.transpose(1, 2), wh.transpose(1, 2), wv.transpose(1, 2),
                                pairwise).transpose(1, 2)
    if h % 2 == 0 and w % 2 == 0 and h >= 8 and w >= 8 and coarse_to_fine:
        # coarse to fine: the best labelling constant on 2x2 cells (an exact coarser energy), upsampled
        cu, cv, ch = coarsen(unary, wv, wh)
        coarse = solve_grid(cu, cv, ch, pairwise, max_sweeps=max_sweeps)
        inits = [coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)]
    else:
        best_const = unary.sum(dim=(1, 2)).argmin(-1)  # (B,)
        inits = [unary.argmin(-1), best_const.reshape(b, 1, 1).expand(b, h, w).clone()]
    if gen is not None and restarts > 0:
        rnd = torch.randint(0, n_labels, (restarts, b, h, w), generator=gen, device=gen.device).to(dev)
        inits += list(rnd)
    s = len(inits)
    labels = torch.cat(inits, 0)  # (S*B, H, W)
    u = unary.repeat(s, 1, 1, 1)
    v = wv.repeat(s, 1, 1)
    hh = wh.repeat(s, 1, 1)
    ut = u.transpose(1, 2).contiguous()
    vt = hh.transpose(1, 2).contiguous()
    ht = v.transpose(1, 2).contiguous()
    v_pad = torch.nn.functional.pad(v, (0, 0, 1, 1))
    vt_pad = torch.nn.functional.pad(vt, (0, 0, 1, 1))
    for _ in range(max_sweeps):
        before = labels
        for parity in (0, 1):
            labels = _row_move(labels, u, v_pad, hh, pairwise, parity)
        lt = labels.transpose(1, 2).contiguous()
        for parity in (0, 1):
            lt = _row_move(lt, ut, vt_pad, ht, pairwise, parity)
        labels = lt.transpose(1, 2).contiguous()
        if torch.equal(before, labels):
            break
    energy = grid_energy(labels, u, v, hh, pairwise).reshape(s, b)
    best = energy.argmin(0)
    return labels.reshape(s, b, h, w)[best, torch.arange(b, device=dev)]
