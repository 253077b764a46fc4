"""The losses of Gatys et al., exactly as the course defines them.

For layer l with N_l feature maps of M_l positions each, F is the N_l x M_l matrix of activations:

* Gram matrix            G = F F^T
* layer style loss       E_l = sum_ij (G_ij - Ghat_ij)^2 / (4 N_l^2 M_l^2)
* style loss             L_style = sum_l w_l E_l
* content loss           L_content = 1/2 sum_ij (F_ij - P_ij)^2
* total                  L = alpha L_content + beta L_style

The optimisers use the *fused* form: ``scaled_gram(F) = F F^T / (2 N M)`` so that
E_l = sum (scaled_gram(F) - scaled_gram(Fhat))^2 — the same number without the huge intermediate values
of an unnormalised Gram matrix (float32 stays exact) and one subtraction per layer.
"""

from __future__ import annotations

import torch


def _as_matrix(f: torch.Tensor) -> torch.Tensor:
    """C x H x W (or 1 x C x H x W, or N x M) -> N_l x M_l."""
    if f.dim() == 4:
        if f.shape[0] != 1:
            raise ValueError("batch the Gram matrices one image at a time")
        f = f[0]
    if f.dim() == 3:
        f = f.reshape(f.shape[0], -1)
    return f


def gram(f: torch.Tensor) -> torch.Tensor:
    """G = F F^T (unnormalised)."""
    m = _as_matrix(f)
    return m @ m.t()


def layer_style_loss(g: torch.Tensor, g_hat: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """E_l = sum (G - Ghat)^2 / (4 N^2 M^2)."""
    return ((g - g_hat) ** 2).sum() / (4.0 * n * n * m * m)


def style_loss(feats: dict, target_feats: dict, weights: dict | None = None) -> torch.Tensor:
    """L_style = sum_l w_l E_l from the two images' feature dicts (textbook form)."""
    total = 0.0
    for name, f in feats.items():
        fm, tm = _as_matrix(f), _as_matrix(target_feats[name])
        if fm.shape[1] != tm.shape[1]:
            raise ValueError(f"layer {name}: M differs ({fm.shape[1]} vs {tm.shape[1]}); use the fused form")
        w = 1.0 if weights is None else weights[name]
        total = total + w * layer_style_loss(gram(fm), gram(tm), fm.shape[0], fm.shape[1])
    return total


def content_loss(f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """L_content = 1/2 sum (F - P)^2."""
    return 0.5 * ((f - p) ** 2).sum()


def total_loss(l_content, l_style, alpha: float, beta: float):
    """L = alpha L_content + beta L_style."""
    return alpha * l_content + beta * l_style


class _ScaledGram(torch.autograd.Function):
    """B x N x M -> B x N x N, ``F F^T / (2 N M)``, with a one-product backward.

    Autograd's ``m @ m.t()`` runs two products in the backward (one per operand) and adds them;
    the Gram matrix is symmetric in ``F``, so ``dF = (dG + dG^T) F / (2 N M)``: one product, half the work
    of the most expensive part of the texture loss."""

    @staticmethod
    def forward(ctx, m):
        ctx.save_for_backward(m)
        ctx.scale = 1.0 / (2.0 * m.shape[-2] * m.shape[-1])
        return torch.bmm(m, m.transpose(1, 2)) * ctx.scale

    @staticmethod
    def backward(ctx, g):
        (m,) = ctx.saved_tensors
        return torch.bmm(g + g.transpose(1, 2), m) * ctx.scale


def scaled_gram(f: torch.Tensor) -> torch.Tensor:
    """F F^T / (2 N M): then E_l = sum (scaled_gram(F) - scaled_gram(Fhat))^2.

    With a batch (B x C x H x W) it returns B x C x C."""
    if f.dim() == 4:
        b, c = f.shape[:2]
        return _ScaledGram.apply(f.reshape(b, c, -1))
    m = _as_matrix(f)
    return _ScaledGram.apply(m.unsqueeze(0))[0]


def fused_style_loss(feats: dict, target_grams: dict, weights: dict | None = None) -> torch.Tensor:
    """sum_l w_l sum (scaled_gram(F_l) - T_l)^2, with T_l = scaled_gram of the style image's features.

    Layers missing from ``feats`` (a scale larger than the image) are skipped. Works on a batch of one
    image or on a batch (mean over the batch)."""
    total = None
    for name, f in feats.items():
        if name not in target_grams:
            continue
        d = scaled_gram(f) - target_grams[name]
        e = (d * d).sum() / (f.shape[0] if f.dim() == 4 else 1)
        e = e * (1.0 if weights is None else weights.get(name, 0.0))
        total = e if total is None else total + e
    if total is None:
        raise ValueError("no style layer fits this image size")
    return total


def style_targets(feats: dict) -> dict:
    """The fused targets (scaled Gram matrices) of one image's features, detached."""
    return {k: scaled_gram(v).detach() for k, v in feats.items()}
