"""PuzzleMix (Kim, Choo & Song, ICML 2020), batched, pure torch, CPU or CUDA.

The procedure follows the official code (snu-mllab/PuzzleMix, ``mixup.py`` / ``main.py``):

1. saliency: ``sqrt(mean over channels of grad^2)`` of the mean cross-entropy loss w.r.t. the input,
   from the model in eval mode (:func:`saliency`); without a model a documented weight-free stand-in
   (image gradient magnitude, :func:`image_saliency`) is used;
2. a block grid of ``block_num = 2^k`` blocks per side (k uniform in 1..4, drawn by the caller); the
   saliency is average-pooled to the grid and normalised to sum 1 per image (the unary terms);
3. a mask with ``n_labels`` levels {0, 1/(L-1), ..., 1} minimising: unary (the saliency each image loses)
   + a label prior from lambda (``eta``; binomial probabilities of the levels) + smoothness ``beta`` (scaled
   by ``1 / block_num / 16`` as in the official code) with a data-dependent part ``gamma`` from the mean
   absolute pixel differences across block boundaries (pooled ``neigh_size``); the official code solves it
   per image with GCO's alpha-beta swap; here :func:`augstudio.core.graphcut.solve_grid` solves the whole
   batch at once;
4. optimal transport (``t_eps``): each image's blocks move towards where the mask shows that image, by
   the official greedy row/column conflict resolution (Algorithm 2 of the paper; the cost update for the
   losing rows is applied every iteration, as the paper states);
5. mixed = mask * transported1 + (1 - mask) * transported2; labels mixed by the mask's mean.

Images here are float ``N x C x H x W`` in 0..1 (any size: sides that the grid does not divide are padded
by replication for the mask and transport, then cropped back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from augstudio.core.base.device import device_of
from augstudio.core.base.errors import RecipeError
from augstudio.core.kernels.graphcut import solve_grid
from augstudio.core.models.loading import model_dtype, preprocess

DEFAULTS = {"alpha": 1.0, "n_labels": 3, "beta": 1.2, "gamma": 0.5, "eta": 0.2, "neigh_size": 4,
            "transport": True, "t_eps": 0.8}


# -- saliency -----------------------------------------------------------------------------------------------
def forward_fn(model):
    """A callable ``x (0..1 float, N x C x H x W) -> logits`` for an nn.Module or a models.LoadedModel."""
    if hasattr(model, "module") and hasattr(model, "mean") and hasattr(model, "input_mode"):
        loaded = model

        def run(x):
            return loaded.module(preprocess(x, loaded))

        return run, loaded.module
    return model, model


def saliency(model, images, labels):
    """PuzzleMix's saliency ``sqrt(mean_c (d loss / d x)^2)`` -> ``N x H x W`` (detached, float32, on the
    images' device).

    ``labels``: class indices (N,) or soft labels (N, K). The model runs in eval mode (restored after), on
    its own device and in its own dtype (a ``.half()`` model gets half inputs), and its parameter gradients
    are left untouched (``torch.autograd.grad`` w.r.t. the input only).
    """
    if torch.is_inference_mode_enabled():
        raise RecipeError("PuzzleMix with a model needs input gradients for its saliency, which "
                          "torch.inference_mode() forbids; run the batch transform outside inference_mode "
                          "(torch.no_grad() is fine), or use it without a model")
    fn, module = forward_fn(model)
    dev = device_of(module, default=images.device)
    # a LoadedModel's preprocessing casts to the model's dtype itself; a plain module gets its dtype here
    dtype = model_dtype(module) if module is model else torch.float32
    was_training = getattr(module, "training", False)
    if hasattr(module, "eval"):
        module.eval()
    try:
        with torch.enable_grad():
            x = images.detach().to(dev, dtype).clone().requires_grad_(True)
            out = fn(x).float()
            if labels.dim() == 2 and labels.shape[1] != out.shape[1]:
                raise RecipeError(f"PuzzleMix: the model gives {out.shape[1]} class scores but the labels have "
                                  f"{labels.shape[1]} classes; give the batch stage num_classes={out.shape[1]} or "
                                  "the model trained on these classes")
            if labels.dim() == 2:
                loss = -(labels.to(out) * F.log_softmax(out, dim=1)).sum(1).mean()
            else:
                loss = F.cross_entropy(out, labels.to(out.device).long())
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        if was_training and hasattr(module, "train"):
            module.train()
    return grad.float().pow(2).mean(1).sqrt().detach().to(images.device)


def image_saliency(images):
    """Weight-free stand-in used when no model is given: local gradient magnitude of the image (smoothed)."""
    x = images.float().mean(1, keepdim=True)
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    g = (gx.pow(2) + gy.pow(2)).sqrt()
    g = F.avg_pool2d(g, 3, stride=1, padding=1, count_include_pad=False)
    return g[:, 0] + 1e-6


# -- the mask problem ---------------------------------------------------------------------------------------
def label_prior(lam, n_labels: int, eta: float, block_num: int):
    """Prior cost per level (N, L): -log of the binomial probability of each level, times eta / block_num^2.

    Level i (i = 0..L-1) means mask value 1 - i/(L-1) (the share of image 1); for L=3 this is the official
    ``[-log(lam^2), -log(2 lam (1-lam)), -log((1-lam)^2)]``.
    """
    lam = lam.double().reshape(-1, 1)
    i = torch.arange(n_labels, dtype=torch.float64, device=lam.device)
    m = n_labels - 1
    comb = torch.tensor([math.comb(m, int(k)) for k in range(n_labels)], dtype=torch.float64, device=lam.device)
    p = comb * lam.pow(m - i) * (1 - lam).pow(i)
    return (eta * -torch.log(p + 1e-8) / block_num ** 2).float()


def level_pairwise(n_labels: int, device=None):
    """V[i, j] = (i - j)^2 / (L - 1)^2 (the official label compatibility)."""
    i = torch.arange(n_labels, dtype=torch.float32, device=device)
    return (i[:, None] - i[None, :]).pow(2) / (n_labels - 1) ** 2




def _largest_divisor_upto(n: int, upto: int) -> int:
    for d in range(min(n, upto), 0, -1):
        if n % d == 0:
            return d
    return 1


@dataclass
class MaskProblem:
    unary: torch.Tensor  # (N, bn, bn, L)
    wv: torch.Tensor  # (N, bn-1, bn) vertical edge weights
    wh: torch.Tensor  # (N, bn, bn-1)
    pairwise: torch.Tensor  # (L, L)
    sal1: torch.Tensor  # (N, bn, bn) pooled, normalised saliency of image 1
    sal2: torch.Tensor


def mask_problem(img1, img2, sal1, sal2, lam, block_num: int, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4,
                 n_labels=3) -> MaskProblem:
    """Build the official graph-cut energy for pairs (img1[i], img2[i]) on a ``block_num`` grid.

    img1, img2: (N, C, H, W) in 0..1 with H, W divisible by block_num; sal1, sal2: (N, H, W) saliency;
    lam: (N,) the prior's lambda (share of image 1).
    """
    n, _, h, w = img1.shape
    bs_h, bs_w = h // block_num, w // block_num
    beta = beta / block_num / 16
    p1 = F.avg_pool2d(sal1[:, None].float(), (bs_h, bs_w))[:, 0]
    p2 = F.avg_pool2d(sal2[:, None].float(), (bs_h, bs_w))[:, 0]
    u1 = p1 / p1.reshape(n, -1).sum(1).clamp_min(1e-12).reshape(n, 1, 1)
    u2 = p2 / p2.reshape(n, -1).sum(1).clamp_min(1e-12).reshape(n, 1, 1)

    nh = _largest_divisor_upto(bs_h, neigh_size)
    nw = _largest_divisor_upto(bs_w, neigh_size)
    i1 = F.avg_pool2d(img1.float(), (nh, nw))
    i2 = F.avg_pool2d(img2.float(), (nh, nw))
    kh, kw = bs_h // nh, bs_w // nw
    dev = img1.device

    def pen(a, b):
        px = (a[:, :, :-1, :] - b[:, :, 1:, :])[:, :, kh - 1::kh, :]
        py = (a[:, :, :, :-1] - b[:, :, :, 1:])[:, :, :, kw - 1::kw]
        px = F.avg_pool2d(px.abs().mean(1), kernel_size=(1, kw))
        py = F.avg_pool2d(py.abs().mean(1), kernel_size=(kh, 1))
        return px, py

    pw_x = torch.zeros(n, 2, 2, block_num - 1, block_num, device=dev)
    pw_y = torch.zeros(n, 2, 2, block_num, block_num - 1, device=dev)
    pw_x[:, 0, 0], pw_y[:, 0, 0] = pen(i2, i2)
    pw_x[:, 0, 1], pw_y[:, 0, 1] = pen(i2, i1)
    pw_x[:, 1, 0], pw_y[:, 1, 0] = pen(i1, i2)
    pw_x[:, 1, 1], pw_y[:, 1, 1] = pen(i1, i1)
    pw_x = beta * gamma * pw_x
    pw_y = beta * gamma * pw_y

    un1 = u1.clone()
    un2 = u2.clone()
    un2[:, :-1, :] += (pw_x[:, 1, 0] + pw_x[:, 1, 1]) / 2.0
    un1[:, :-1, :] += (pw_x[:, 0, 1] + pw_x[:, 0, 0]) / 2.0
    un2[:, 1:, :] += (pw_x[:, 0, 1] + pw_x[:, 1, 1]) / 2.0
    un1[:, 1:, :] += (pw_x[:, 1, 0] + pw_x[:, 0, 0]) / 2.0
    un2[:, :, :-1] += (pw_y[:, 1, 0] + pw_y[:, 1, 1]) / 2.0
    un1[:, :, :-1] += (pw_y[:, 0, 1] + pw_y[:, 0, 0]) / 2.0
    un2[:, :, 1:] += (pw_y[:, 0, 1] + pw_y[:, 1, 1]) / 2.0
    un1[:, :, 1:] += (pw_y[:, 1, 0] + pw_y[:, 0, 0]) / 2.0
    wv = (pw_x[:, 1, 0] + pw_x[:, 0, 1] - pw_x[:, 1, 1] - pw_x[:, 0, 0]) / 2 + beta
    wh = (pw_y[:, 1, 0] + pw_y[:, 0, 1] - pw_y[:, 1, 1] - pw_y[:, 0, 0]) / 2 + beta

    # level i shows image 1 with weight 1 - t_i: it loses t_i of image 1's saliency and (1 - t_i) of image 2's
    t = torch.linspace(0, 1, n_labels, device=dev)
    prior = label_prior(lam.to(dev), n_labels, eta, block_num).to(dev)  # (N, L)
    unary = (1 - t) * un2[..., None] + t * un1[..., None] + prior[:, None, None, :]
    return MaskProblem(unary, wv, wh, level_pairwise(n_labels, dev), u1, u2)


def solve_mask(problem: MaskProblem, gen: torch.Generator | None = None):
    """Mask (N, bn, bn) with values 1 - level / (L - 1)."""
    labels = solve_grid(problem.unary, problem.wv, problem.wh, problem.pairwise, gen=gen)
    n_labels = problem.unary.shape[-1]
    return 1.0 - labels.float() / (n_labels - 1)


# -- transport ----------------------------------------------------------------------------------------------
_COST_CACHE: dict = {}


def cost_matrix(block_num: int, device=None):
    """Squared grid distance between blocks, divided by (block_num - 1)^2 (official ``cost_matrix``)."""
    key = (block_num, str(device))
    if key not in _COST_CACHE:
        r = torch.arange(block_num, dtype=torch.float32)
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
        c = (pos[:, None, :] - pos[None, :, :]).pow(2).sum(-1) / max(block_num - 1, 1) ** 2
        _COST_CACHE[key] = c.to(device)
    return _COST_CACHE[key]


def mask_transport(mask, sal_pool, eps: float = 0.8):
    """Transport of blocks towards the mask: returns ``src`` (N, B^2) long, the source block shown at each
    destination block (B^2 = none: the destination is left empty, as in the official plan).

    The official greedy algorithm: every source block i picks its cheapest destination j, cost
    ``eps * distance(i, j) - saliency_i * [mask_j > 0]``; per destination the claim with the lowest cost
    wins (``argmin`` over the column of ``plan * cost``, whose unclaimed entries are 0, first index on
    ties); each losing source pays +1 on the destination it lost and chooses again; ``block_num`` rounds;
    the last round's winners form the plan. Computed here with O(B^2) work per round on the claims
    instead of dense B^2 x B^2 plan matrices (tests check it equals the dense form).
    """
    n = mask.shape[0]
    bn = mask.shape[-1]
    r = bn * bn
    dev = mask.device
    z = (mask > 0).float().reshape(n, 1, r)
    # eps * C - sal_i * z_j in one pass
    cost = torch.addcmul((eps * cost_matrix(bn, dev)).unsqueeze(0), sal_pool.reshape(n, r, 1).float(), z,
                         value=-1.0)
    ar = torch.arange(r, device=dev).expand(n, r)
    row_best = cost.argmin(-1)
    winner = None
    for it in range(bn):
        claim = cost.gather(-1, row_best.unsqueeze(-1)).squeeze(-1)  # (N, R)
        inf = torch.full((n, r), float("inf"), device=dev)
        colmin = inf.scatter_reduce(1, row_best, claim, "amin")
        count = torch.zeros(n, r, device=dev).scatter_add(1, row_best, torch.ones(n, r, device=dev))
        has_free = count < r  # some rows do not claim this column: their entry in plan * cost is 0
        m = torch.where(has_free, colmin.clamp_max(0.0), colmin)
        at_min = claim == m.gather(1, row_best)
        first_claim = torch.full((n, r), r, dtype=torch.long, device=dev).scatter_reduce(
            1, row_best, torch.where(at_min, ar, torch.full_like(ar, r)), "amin")
        # first row that does not claim column j: row 0, unless row 0 claims j
        r0 = row_best[:, 0]
        other = row_best != r0.unsqueeze(1)
        fi = torch.where(other.any(1), other.float().argmax(1), torch.full_like(r0, r))
        first_free = torch.zeros(n, r, dtype=torch.long, device=dev).scatter(1, r0.unsqueeze(1), fi.unsqueeze(1))
        ok = (m < 0) | ~has_free | (first_claim < first_free)
        winner = torch.where(ok, first_claim, torch.full_like(first_claim, r))  # (N, R) source per destination
        won = winner.gather(1, row_best) == ar
        if it == bn - 1:
            break
        lost = ~won
        if not bool(lost.any()):
            break  # nothing changes in later rounds
        cost.scatter_add_(2, row_best.unsqueeze(-1), lost.float().unsqueeze(-1))
        bi, ri = lost.nonzero(as_tuple=True)
        if bi.numel() * 8 < n * r:  # few losers: only their rows can change
            row_best = row_best.clone()
            row_best[bi, ri] = cost[bi, ri].argmin(-1)
        else:
            row_best = cost.argmin(-1)
    return winner


def transport_image(img, src, block_num: int):
    """Move blocks of ``img`` (N, C, H, W; H, W divisible by block_num): destination block j shows source
    block ``src[:, j]`` (``block_num^2`` = empty, zeros)."""
    n, c, h, w = img.shape
    bh, bw = h // block_num, w // block_num
    r = block_num ** 2
    p = img.reshape(n, c, block_num, bh, block_num, bw).permute(0, 2, 4, 1, 3, 5).reshape(n, r, -1)
    p = torch.cat([p, torch.zeros_like(p[:, :1])], 1)
    out = p[torch.arange(n, device=p.device)[:, None], src.to(p.device)]  # (N, R, D) without an expanded index
    return out.reshape(n, block_num, block_num, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


# -- the whole procedure ------------------------------------------------------------------------------------
@dataclass
class PuzzleMixResult:
    mixed: torch.Tensor  # (N, C, H, W)
    ratio: torch.Tensor  # (N,) share of image 1 (mask mean)
    mask: torch.Tensor  # (N, H, W) full-resolution mask
    block_mask: torch.Tensor  # (N, bn, bn)
    transported1: torch.Tensor
    transported2: torch.Tensor
    sal1: torch.Tensor  # (N, H, W) raw saliency
    sal2: torch.Tensor
    src1: torch.Tensor | None  # (N, bn^2) transport: source block shown at each block (bn^2 = empty)
    src2: torch.Tensor | None
    block_num: int


def _pad_to(x, block_num):
    h, w = x.shape[-2:]
    ph, pw = (-h) % block_num, (-w) % block_num
    if ph or pw:  # replicate to a multiple of the grid; cropped back at the end
        return F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def mix_with(img1, img2, res: PuzzleMixResult):
    """Apply a computed mask and transport to other pixel values of the same pairs (e.g. normalised)."""
    h, w = img1.shape[-2:]
    a, b = _pad_to(img1, res.block_num), _pad_to(img2, res.block_num)
    if res.src1 is not None:
        a = transport_image(a, res.src1, res.block_num)
        b = transport_image(b, res.src2, res.block_num)
    full = F.interpolate(res.block_mask[:, None].to(a.dtype), size=a.shape[-2:], mode="nearest")
    return (full * a + (1 - full) * b)[..., :h, :w]


def puzzlemix_pairs(img1, img2, sal1, sal2, lam, block_num: int, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4,
                    n_labels=3, transport=True, t_eps=0.8, gen: torch.Generator | None = None) -> PuzzleMixResult:
    """PuzzleMix of pairs (img1[i], img2[i]) with saliencies sal1, sal2 and prior lambda ``lam`` (N,).

    Images are float 0..1 (the pairwise term uses raw pixel differences, as the official code does after
    un-normalising). Works on any device; ``gen`` seeds optional random restarts of the solver.
    """
    n, c, h, w = img1.shape
    lam = torch.as_tensor(lam, dtype=torch.float32, device=img1.device).reshape(-1).expand(n)
    img1p, img2p = _pad_to(img1.float(), block_num), _pad_to(img2.float(), block_num)
    s1p = _pad_to(sal1[:, None].float(), block_num)[:, 0]
    s2p = _pad_to(sal2[:, None].float(), block_num)[:, 0]
    prob = mask_problem(img1p, img2p, s1p, s2p, lam, block_num, beta, gamma, eta, neigh_size, n_labels)
    bmask = solve_mask(prob, gen)
    t1, t2 = img1p, img2p
    src1 = src2 = None
    if transport:
        src1 = mask_transport(bmask, prob.sal1, t_eps)
        t1 = transport_image(img1p, src1, block_num)
        src2 = mask_transport(1 - bmask, prob.sal2, t_eps)
        t2 = transport_image(img2p, src2, block_num)
    full = F.interpolate(bmask[:, None], size=img1p.shape[-2:], mode="nearest")
    mixed = torch.lerp(t2, t1, full)  # full * t1 + (1 - full) * t2 in one pass
    full = full[:, 0, :h, :w]
    return PuzzleMixResult(mixed[..., :h, :w], full.reshape(n, -1).mean(1), full, bmask, t1[..., :h, :w],
                           t2[..., :h, :w], sal1, sal2, src1, src2, block_num)
