"""Texture synthesis and Gatys neural style transfer: optimise the pixels of an image so its features match.

Both are jobs (see ``core/jobs.py``): generators that yield ``Progress`` after every iteration, with
``preview = {"image": uint8 3xHxW tensor or None, "loss": float, "level": int, "iteration": int}`` (an image every
``preview_every`` iterations), that honour a ``CancelToken`` between iterations, and return a
``StyleResult``.

Speed comes from the implementation, not from changing the objective: L-BFGS with a strong-Wolfe line
search (Gatys et al. use L-BFGS), the fused scaled-Gram loss (``losses.fused_style_loss``), FFT convolution
for the large random filters, and an optional coarse-to-fine pyramid (``pyramid`` levels: the first run at
1/2, 1/4 ... of the size). benchmarks/style.py measures each; with the random features the pyramid did not
pay off at 128 px, so it is off by default.
"""

from __future__ import annotations

import time

import torch

from augstudio.core.base import seeding
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import JobCancelled, ParamError
from augstudio.core.base.jobs import CancelToken, Progress

from .common import StyleResult, resize, to_float, to_uint8
from .features import GATYS_CONTENT_LAYER, GATYS_STYLE_LAYERS, make_features
from .losses import content_loss, fused_style_loss, style_targets


def _level_sizes(size, levels: int):
    h, w = int(size[0]), int(size[1])
    out = []
    for k in range(levels - 1, -1, -1):
        f = 2 ** k
        out.append((max(8, h // f), max(8, w // f), f))
    return out


def _split_iterations(total: int, levels: int) -> list[int]:
    """Iterations per level: coarse levels are cheap, so each gets as many as the finest one."""
    per = max(1, total // levels)
    out = [per] * levels
    out[-1] += total - per * levels
    return out


def _optimiser(name: str, x: torch.Tensor, lr: float | None):
    if name == "lbfgs":
        return torch.optim.LBFGS([x], lr=1.0 if lr is None else lr, max_iter=1, max_eval=20, history_size=50,
                                 tolerance_grad=0.0, tolerance_change=0.0,
                                 line_search_fn="strong_wolfe")
    if name == "adam":
        return torch.optim.Adam([x], lr=0.02 if lr is None else lr)
    raise ParamError(f"parameter 'optimizer' must be lbfgs or adam, got {name!r}")


def _rgb(x):
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class _CachedClosure:
    """The L-BFGS closure, with a cache of the last few evaluations.

    torch's ``LBFGS.step`` starts by evaluating the closure at the current point, and the line search has
    already evaluated exactly that point (``x + t d``, computed the same way): with one iteration per
    ``step`` (so a job can report and cancel) that re-evaluation doubled the cost of every iteration.
    A hit (bit-identical ``x``) restores the stored loss and gradient instead of recomputing them.

    The image is optimised unconstrained and the loss is that of ``x.clamp(0, 1)`` (the image we show and
    return): clamping ``x`` in place between steps would move it off the line-search point, corrupting
    L-BFGS's curvature pairs and defeating the cache. That is the texture default (``clamp='graph'``).
    Style transfer starts from the content image, whose saturated pixels would leave the range on the first
    step and then get no gradient through the clamp (the loss stalled just above the plain
    implementation's); it keeps the projection after each step (``clamp='step'``), where the cache still
    saves the re-evaluation whenever the projection changed nothing."""

    def __init__(self, opt, loss_fn, x, keep: int = 4, clamp: str = "graph"):
        self.opt, self.loss_fn, self.x, self.keep = opt, loss_fn, x, keep
        self.cache: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.evals = 0
        self.clamp = clamp
        self.last = float("nan")

    def __call__(self):
        x = self.x
        for xc, loss, grad in self.cache:
            if torch.equal(xc, x):
                x.grad = grad.clone()
                self.last = float(loss)
                return loss
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(x.clamp(0, 1) if self.clamp == "graph" else x)
        loss.backward()
        self.evals += 1
        loss = loss.detach()
        self.last = float(loss)
        if self.keep:
            self.cache.insert(0, (x.detach().clone(), loss, x.grad.detach().clone()))
            del self.cache[self.keep:]
        return loss

    def current_loss(self) -> float:
        """The loss at the current ``x`` when it was evaluated (L-BFGS: the accepted line-search point, not
        the last trial), else the last evaluation's (Adam: the loss before its update)."""
        for xc, loss, _ in self.cache:
            if torch.equal(xc, self.x):
                return float(loss)
        return self.last


def _run_levels(levels, make_loss, x0, iterations, optimizer, lr, token, preview_every, title, clamp="graph"):
    """The shared loop. ``make_loss(level_size, factor) -> loss_fn(x) -> scalar``. ``x0`` may have one
    channel (a gray source): then the image stays gray and is shown as RGB."""
    token = token or CancelToken()
    t0 = time.perf_counter()
    losses: list[float] = []
    per = _split_iterations(iterations, len(levels))
    total = sum(per)
    done = 0
    x = None
    for li, ((h, w, f), n_it) in enumerate(zip(levels, per)):
        token.check(f"{title}: before level {li + 1}")
        x = resize(x0 if x is None else x.detach().clamp(0, 1), (h, w)).clone().requires_grad_(True)
        loss_fn = make_loss((h, w), f)
        opt = _optimiser(optimizer, x, lr)
        if li == 0:
            with torch.no_grad():
                losses.append(float(loss_fn(x)))  # losses[0]: the starting loss
        closure = _CachedClosure(opt, loss_fn, x, keep=4 if optimizer == "lbfgs" else 0, clamp=clamp)

        for _ in range(n_it):
            if token.cancelled:
                raise JobCancelled(f"{title}: cancelled after {done} of {total} iterations")
            with torch.enable_grad():
                opt.step(closure)
            if closure.clamp == "step":
                with torch.no_grad():
                    x.clamp_(0, 1)
            done += 1
            cur = closure.current_loss()
            losses.append(cur)
            show = preview_every and (done % preview_every == 0 or done == total)
            yield Progress(done, total, f"{title}: level {li + 1}/{len(levels)}, loss {cur:.4g}",
                           {"image": to_uint8(_rgb(x.clamp(0, 1))) if show else None, "loss": cur,
                            "level": li + 1,
                            "iteration": done, "evaluations": closure.evals})
    return x.detach().clamp(0, 1), losses, time.perf_counter() - t0


def _noise(size, seed, device, like=None):
    gen = seeding.generator(seed, stream="style-noise")
    n = torch.randn(1, 3, size[0], size[1], generator=gen, device=gen.device) * 0.15
    base = 0.5 if like is None else like.mean(dim=(2, 3), keepdim=True).cpu()
    return (base + n).clamp(0, 1).to(device)


def texture_job(source, size=(256, 256), features="random", weights="imagenet", layers=None,
                layer_weights=None, iterations: int = 200, optimizer: str = "lbfgs", lr=None, pyramid: int = 1,
                seed: int = 0, device=None, token: CancelToken | None = None, preview_every: int = 10,
                max_source_size: int | None = 512):
    """Synthesise a texture of ``size`` (independent of the source's) whose Gram matrices match the source's.

    ``features``: 'random' (weight-free multi-scale) or 'vgg19' (with ``weights``: 'imagenet', 'random' or
    a file), or a ready extractor module. ``pyramid``: number of coarse-to-fine levels (1 = none)."""
    dev = resolve_device(device)
    net = features if isinstance(features, torch.nn.Module) else make_features(
        features, weights, layers or (GATYS_STYLE_LAYERS if features == "vgg19" else None), seed, dev)
    src = to_float(source, dev, max_source_size)
    if pyramid < 1:
        raise ParamError(f"parameter 'pyramid' must be >= 1 (levels), got {pyramid}")
    levels = _level_sizes(size, pyramid)
    x0 = _noise(levels[0][:2], seed, dev, like=src)
    gray = bool((src[:, :1] == src).all())

    def make_loss(hw, f):
        s = resize(src, (max(8, src.shape[-2] // f), max(8, src.shape[-1] // f)))
        with torch.no_grad():
            targets = style_targets(net(s))
        w = layer_weights or {k: 1.0 / len(targets) for k in targets}
        return lambda x: fused_style_loss(net(_rgb(x)), targets, w)

    x, losses, secs = yield from _run_levels(levels, make_loss, x0, iterations, optimizer, lr, token,
                                             preview_every, "texture")
    if gray:  # a gray source gives a gray texture: the synthesis' channel mean (the losses are the RGB run's)
        x = x.mean(dim=1, keepdim=True)
    return StyleResult(to_uint8(_rgb(x)), losses, secs, {"method": "texture", "size": list(size),
                                                    "optimizer": optimizer, "pyramid": pyramid})


def nst_job(content, style, features="random", weights="imagenet", style_layers=None, content_layer=None,
            alpha: float = 1.0, beta: float = 1e6, init: str = "content", iterations: int = 200,
            optimizer: str = "lbfgs", lr=None, pyramid: int = 1, max_size: int | None = 512, seed: int = 0,
            device=None, token: CancelToken | None = None, preview_every: int = 10, layer_weights=None):
    """Gatys et al. neural style transfer: minimise alpha L_content + beta L_style from the content image
    (``init='content'``) or from noise (``init='noise'``). The output has the content's size (at most
    ``max_size`` on the longer side)."""
    if init not in ("content", "noise"):
        raise ParamError(f"parameter 'init' must be content or noise, got {init!r}")
    dev = resolve_device(device)
    if isinstance(features, torch.nn.Module):
        net = features
        s_layers = tuple(style_layers or net.layers)
        c_layer = content_layer or s_layers[len(s_layers) // 2]
    elif features == "vgg19":
        s_layers = tuple(style_layers or GATYS_STYLE_LAYERS)
        c_layer = content_layer or GATYS_CONTENT_LAYER
        net = make_features("vgg19", weights, tuple(dict.fromkeys(s_layers + (c_layer,))), seed, dev)
    else:
        net = make_features(features, weights, None, seed, dev)
        s_layers = tuple(style_layers or net.layers)
        c_layer = content_layer or "scale11"
    if c_layer not in net.layers:
        raise ParamError(f"parameter 'content_layer': {c_layer!r} is not a layer of this extractor "
                         f"({', '.join(net.layers)})")
    c = to_float(content, dev, max_size)
    s_img = to_float(style, dev, max_size)
    levels = _level_sizes(c.shape[-2:], pyramid)
    x0 = resize(c, levels[0][:2]) if init == "content" else _noise(levels[0][:2], seed, dev, like=s_img)

    def make_loss(hw, f):
        c_l = resize(c, hw)
        s_l = resize(s_img, (max(8, s_img.shape[-2] // f), max(8, s_img.shape[-1] // f)))
        with torch.no_grad():
            sf = net(s_l)
            targets = style_targets({k: v for k, v in sf.items() if k in s_layers})
            p = net(c_l)[c_layer].detach()
        w = layer_weights or {k: 1.0 / len(targets) for k in targets}

        def loss(x):
            feats = net(x)
            ls = fused_style_loss({k: v for k, v in feats.items() if k in targets}, targets, w)
            return alpha * content_loss(feats[c_layer], p) + beta * ls
        return loss

    x, losses, secs = yield from _run_levels(levels, make_loss, x0, iterations, optimizer, lr, token,
                                             preview_every, "style transfer", clamp="step")
    return StyleResult(to_uint8(x), losses, secs, {"method": "nst", "alpha": alpha, "beta": beta,
                                                    "init": init, "optimizer": optimizer})
