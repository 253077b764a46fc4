"""PuzzleMix speed: augstudio's batched version vs the official procedure, side by side in one run.

The reference follows the official code (snu-mllab/PuzzleMix ``mixup_graph``) as the paper describes it:
the same unary / pairwise terms, then one GCO alpha-beta-swap graph cut *per image* (the ``gco`` package,
costs scaled to int32 by 1000 * block_num^2 as the official does), then the official transport with dense
(B^2 x B^2) plan matrices for both images, and the mix. augstudio's version solves the whole batch's masks
at once in torch (``augstudio.core.graphcut``) and computes the same transport plan with O(B^2) work per
round. Both get the same saliency (input gradient of a small CNN; timed separately, it is shared).

    python benchmarks/puzzlemix.py                 # CPU: batch 64 at 32x32, batch 32 at 224x224
    python benchmarks/puzzlemix.py --device cuda   # augstudio on the GPU (reference cut stays on CPU)

Prints markdown tables: ms per batch for each block count (2, 4, 8, 16) and their mean (the official
draws k uniform in 1..4), the speed-up, mixup / cutmix for scale, and the energy gap of the masks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from augstudio.core.kernels.graphcut import grid_energy, solve_grid
from augstudio.core.methods.puzzlemix import (
    cost_matrix,
    mask_problem,
    mask_transport,
    puzzlemix_pairs,
    saliency,
    transport_image,
)


# -- the reference (official procedure) ---------------------------------------------------------------------
def _ref_terms(img1, img2, sal1, sal2, lam, bn, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4):
    """The official unary / pairwise terms (same formulas as mixup_graph; batched torch as the official)."""
    n, _, _, width = img1.shape
    block_size = width // bn
    neigh_size = min(neigh_size, block_size)
    while block_size % neigh_size:
        neigh_size -= 1
    beta = beta / bn / 16
    g1 = F.avg_pool2d(sal1[:, None], block_size)[:, 0]
    u1 = g1 / g1.reshape(n, -1).sum(1).reshape(n, 1, 1)
    g2 = F.avg_pool2d(sal2[:, None], block_size)[:, 0]
    u2 = g2 / g2.reshape(n, -1).sum(1).reshape(n, 1, 1)
    p1, p2 = F.avg_pool2d(img1, neigh_size), F.avg_pool2d(img2, neigh_size)
    k = block_size // neigh_size

    def pen(a, b):
        px = (a[:, :, :-1, :] - b[:, :, 1:, :])[:, :, k - 1::k, :]
        py = (a[:, :, :, :-1] - b[:, :, :, 1:])[:, :, :, k - 1::k]
        return F.avg_pool2d(px.abs().mean(1), (1, k)), F.avg_pool2d(py.abs().mean(1), (k, 1))

    pw_x = torch.zeros(n, 2, 2, bn - 1, bn, device=img1.device)
    pw_y = torch.zeros(n, 2, 2, bn, bn - 1, device=img1.device)
    pw_x[:, 0, 0], pw_y[:, 0, 0] = pen(p2, p2)
    pw_x[:, 0, 1], pw_y[:, 0, 1] = pen(p2, p1)
    pw_x[:, 1, 0], pw_y[:, 1, 0] = pen(p1, p2)
    pw_x[:, 1, 1], pw_y[:, 1, 1] = pen(p1, p1)
    pw_x, pw_y = beta * gamma * pw_x, beta * gamma * pw_y
    un1, un2 = u1.clone(), u2.clone()
    un2[:, :-1, :] += (pw_x[:, 1, 0] + pw_x[:, 1, 1]) / 2
    un1[:, :-1, :] += (pw_x[:, 0, 1] + pw_x[:, 0, 0]) / 2
    un2[:, 1:, :] += (pw_x[:, 0, 1] + pw_x[:, 1, 1]) / 2
    un1[:, 1:, :] += (pw_x[:, 1, 0] + pw_x[:, 0, 0]) / 2
    un2[:, :, :-1] += (pw_y[:, 1, 0] + pw_y[:, 1, 1]) / 2
    un1[:, :, :-1] += (pw_y[:, 0, 1] + pw_y[:, 0, 0]) / 2
    un2[:, :, 1:] += (pw_y[:, 0, 1] + pw_y[:, 1, 1]) / 2
    un1[:, :, 1:] += (pw_y[:, 1, 0] + pw_y[:, 0, 0]) / 2
    pw_x = (pw_x[:, 1, 0] + pw_x[:, 0, 1] - pw_x[:, 1, 1] - pw_x[:, 0, 0]) / 2
    pw_y = (pw_y[:, 1, 0] + pw_y[:, 0, 1] - pw_y[:, 1, 1] - pw_y[:, 0, 0]) / 2
    return (un1.cpu().numpy(), un2.cpu().numpy(), pw_x.cpu().numpy(), pw_y.cpu().numpy(), beta, u1, u2)


def _ref_graphcut(unary1, unary2, pw_x, pw_y, lam, beta, eta, n_labels=3):
    """graphcut_multi: one GCO alpha-beta swap per image."""
    import gco

    bn = unary1.shape[0]
    large = 1000 * bn ** 2
    prior = eta * np.array([-np.log(lam ** 2 + 1e-8), -np.log(2 * lam * (1 - lam) + 1e-8),
                            -np.log((1 - lam) ** 2 + 1e-8)]) / bn ** 2
    unary = (large * np.stack([(1 - t) * unary1 + t * unary2 + prior[i]
                               for i, t in enumerate(np.linspace(0, 1, n_labels))], -1)).astype(np.int32)
    pairwise = np.array([[(i - j) ** 2 / (n_labels - 1) ** 2 for j in range(n_labels)] for i in range(n_labels)],
                        dtype=np.float32)
    labels = gco.cut_grid_graph(unary, pairwise, (large * (pw_x + beta)).astype(np.int32),
                                (large * (pw_y + beta)).astype(np.int32), algorithm="swap")
    return 1.0 - np.asarray(labels).reshape(bn, bn) / (n_labels - 1), np.asarray(labels).reshape(bn, bn)


def _ref_transport(mask, grad_pool, eps):
    bn = mask.shape[-1]
    cost = eps * cost_matrix(bn, mask.device).unsqueeze(0) - grad_pool.reshape(-1, bn * bn, 1) * (
        mask > 0).float().reshape(-1, 1, bn * bn)
    plan_win = None
    for _ in range(bn):
        row_best = cost.min(-1)[1]
        plan = torch.zeros_like(cost).scatter_(-1, row_best.unsqueeze(-1), 1)
        col_best = (plan * cost).min(-2)[1]
        plan_win = torch.zeros_like(cost).scatter_(-2, col_best.unsqueeze(-2), 1) * plan
        cost += (1 - plan_win) * plan
    return plan_win


def _ref_transport_image(img, plan, bn):
    n, c, h, w = img.shape
    bs = h // bn
    p = img.reshape(n, c, bn, bs, bn, bs).permute(0, 2, 4, 1, 3, 5).reshape(n, bn * bn, -1)
    out = plan.transpose(1, 2) @ p
    return out.reshape(n, bn, bn, c, bs, bs).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def reference_puzzlemix(img1, img2, sal1, sal2, lam, bn, t_eps=0.8, eta=0.2):
    un1, un2, pw_x, pw_y, beta, u1, u2 = _ref_terms(img1, img2, sal1, sal2, lam, bn)
    masks, labels = [], []
    for i in range(img1.shape[0]):
        m, lab = _ref_graphcut(un2[i], un1[i], pw_x[i], pw_y[i], lam, beta, eta)
        masks.append(m)
        labels.append(lab)
    mask = torch.tensor(np.stack(masks), dtype=torch.float32, device=img1.device).unsqueeze(1)
    t1 = _ref_transport_image(img1, _ref_transport(mask, u1, t_eps), bn)
    t2 = _ref_transport_image(img2, _ref_transport(1 - mask, u2, t_eps), bn)
    full = F.interpolate(mask, size=img1.shape[-1])
    return full * t1 + (1 - full) * t2, torch.tensor(np.stack(labels)).long()


# -- setup ---------------------------------------------------------------------------------------------------
def _images(n, size, seed=0):
    try:
        from skimage import data

        pics = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    except Exception:  # noqa: BLE001 - benchmark data only
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, size, size, generator=g)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = torch.from_numpy(np.ascontiguousarray(pics[i % len(pics)])).permute(2, 0, 1).float() / 255
        s = int(torch.randint(min(p.shape[1:]) // 3, min(p.shape[1:]), (), generator=g))
        y = int(torch.randint(0, p.shape[1] - s + 1, (), generator=g))
        x = int(torch.randint(0, p.shape[2] - s + 1, (), generator=g))
        out.append(F.interpolate(p[None, :, y:y + s, x:x + s], size=(size, size), mode="bilinear",
                                 antialias=True)[0])
    return torch.stack(out)


def _cnn(num_classes=10):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, num_classes))


def _time(fn, repeats, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--skip-224", action="store_true")
    ap.add_argument("--json", default=None, help="also write every number here (benchmarks/figures.py reads it)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    configs = [(64, 32)] + ([] if args.skip_224 else [(32, 224)])
    from augstudio.core.ops import get_batch_op

    print(f"device {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
          + f", torch threads {torch.get_num_threads()}, median of {args.repeats}\n")
    rows, gaps, parts = [], [], []
    for n, size in configs:
        x = _images(n, size).to(dev)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).to(dev)
        model = _cnn().to(dev)
        y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(2)).to(dev)
        t_sal = _time(lambda: saliency(model, x, y), args.repeats, dev)  # noqa: B023
        sal = saliency(model, x, y)
        lam = 0.4
        x2, s2 = x[perm], sal[perm]
        ours_all, ref_all = [], []
        for bn in (2, 4, 8, 16):
            t_ours = _time(lambda: puzzlemix_pairs(x, x2, sal, s2, lam, bn), args.repeats, dev)  # noqa: B023
            t_ref = _time(lambda: reference_puzzlemix(x, x2, sal, s2, lam, bn), args.repeats, dev)  # noqa: B023
            ours_all.append(t_ours)
            ref_all.append(t_ref)
            rows.append((f"{n} x {size}x{size}", f"{bn}x{bn}", t_ours, t_ref))
            # mask quality: energy of our labels vs GCO's on the same problems
            prob = mask_problem(x.cpu(), x2.cpu(), sal.cpu(), s2.cpu(), torch.full((n,), lam), bn)
            res = puzzlemix_pairs(x, x2, sal, s2, lam, bn)
            ours_lab = torch.round((1 - res.block_mask.cpu()) * 2).long()
            _, ref_lab = reference_puzzlemix(x, x2, sal, s2, lam, bn)
            e_o = grid_energy(ours_lab, prob.unary, prob.wv, prob.wh, prob.pairwise)
            e_r = grid_energy(ref_lab, prob.unary, prob.wv, prob.wh, prob.pairwise)
            gaps.append((e_o - e_r) / e_r.abs())
            # components: the mask solve (batched torch vs one GCO swap per image) and the transport
            probd = mask_problem(x, x2, sal, s2, torch.full((n,), lam, device=dev), bn)
            t_solve = _time(lambda: solve_grid(probd.unary, probd.wv, probd.wh, probd.pairwise),  # noqa: B023
                            args.repeats, dev)
            un1, un2, pwx, pwy, beta_n, u1, _u2 = _ref_terms(x, x2, sal, s2, lam, bn)
            t_gco = _time(lambda: [_ref_graphcut(un2[i], un1[i], pwx[i], pwy[i], lam, beta_n, 0.2)  # noqa: B023
                                   for i in range(n)], args.repeats, dev)  # noqa: B023
            bmask = res.block_mask
            t_tr = _time(lambda: transport_image(x, mask_transport(bmask, probd.sal1, 0.8), bn),  # noqa: B023
                         args.repeats, dev)
            t_trd = _time(lambda: _ref_transport_image(x, _ref_transport(bmask[:, None], u1, 0.8), bn),  # noqa: B023
                          args.repeats, dev)
            parts.append((f"{n} x {size}x{size}", f"{bn}x{bn}", t_solve, t_gco, t_tr, t_trd))
        rows.append((f"{n} x {size}x{size}", "mean over k=1..4", statistics.mean(ours_all), statistics.mean(ref_all)))
        mix_ms = {}
        for name in ("mixup", "cutmix"):
            op = get_batch_op(name)()
            params = op.sample(torch.Generator().manual_seed(0), n, (size, size), 10)
            soft = F.one_hot(y, 10).float()
            mix_ms[name] = _time(lambda: op.apply_to_batch(x, soft, params), args.repeats, dev)  # noqa: B023
        rows.append((f"{n} x {size}x{size}", "saliency (shared, both)", t_sal, t_sal))
        rows.append((f"{n} x {size}x{size}", "mixup / cutmix (augstudio)", mix_ms["mixup"], mix_ms["cutmix"]))

    print("| batch | blocks | augstudio ms | official procedure ms | speed-up |")
    print("|---|---|---:|---:|---:|")
    for batch, what, a, b in rows:
        if what.startswith("mixup"):
            print(f"| {batch} | mixup / cutmix | {a:.2f} / {b:.2f} | — | — |")
        elif what.startswith("saliency"):
            print(f"| {batch} | saliency (same for both) | {a:.1f} | {b:.1f} | — |")
        else:
            print(f"| {batch} | {what} | {a:.1f} | {b:.1f} | {b / a:.1f}x |")
    print("\n| batch | blocks | mask solve: augstudio ms | mask solve: GCO per image ms | transport (one image "
          "set): augstudio ms | transport: official dense ms |")
    print("|---|---|---:|---:|---:|---:|")
    for batch, what, a, b, c, d in parts:
        print(f"| {batch} | {what} | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} |")
    g = torch.cat(gaps)
    print(f"\nmask energy vs GCO swap over {g.numel()} masks: within 1% on {(g <= 0.01).float().mean():.1%}, "
          f"median {g.median():+.2e}, max {g.max():+.2e}")
    if args.json:
        import json

        out = {"device": str(dev), "threads": torch.get_num_threads(), "repeats": args.repeats,
               "rows": [{"batch": b, "what": w, "augstudio_ms": a, "reference_ms": r} for b, w, a, r in rows],
               "parts": [{"batch": b, "blocks": w, "solve_ms": a, "gco_ms": r, "transport_ms": c, "dense_ms": d}
                         for b, w, a, r, c, d in parts],
               "energy": {"n": g.numel(), "within_1pct": float((g <= 0.01).float().mean()),
                          "median": float(g.median()), "max": float(g.max())}}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
