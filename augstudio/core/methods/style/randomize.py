"""Style randomisation that needs no weights.

* ``randconv``: random convolutions (Xu, Zhang, Li & Niethammer, "Robust and generalizable visual
  representation learning via random convolutions", ICLR 2021): a conv layer with a random kernel size
  k in {1, 3, 5, 7} and weights ~ N(0, 1 / (k^2 C_in)) (He init), drawn fresh per image; the output is
  mixed with the input, ``mix * x + (1 - mix) * conv(x)`` (their RandConv-mix). To stay an image, the
  conv output is first given the input's per-channel mean and std.
* ``random_stats``: AdaIN with random style statistics. Without a model it acts on a Laplacian pyramid
  (a fixed, exactly invertible multi-scale "encoder"): the std of every band and channel and the mean
  colour of the low-pass residual are re-drawn around the image's own (log-normal factors of spread
  ``strength``), then the pyramid is collapsed. With an AdaIN model the same happens at relu4_1.

Both take their randomness from a seed stored as plain data, so a recipe replays them exactly:
``draw_randconv`` / ``draw_stats`` draw that data from a generator (the ``stylize`` op's ``sample``, and the
style dispatcher for the CLI and the GUI), ``randomize`` applies it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from augstudio.core.base import seeding

from .adain import adain, calc_mean_std

KERNEL_SIZES = (1, 3, 5, 7)
RANDOMIZERS = ("randconv", "stats")


def draw_randconv(gen: torch.Generator, alpha: float) -> dict:
    """RandConv's draw: a seed for the weights, a kernel size, and the mix uniform in [1 - alpha, 1]."""
    seed = seeding.randint(gen, 0, 2**31 - 1)
    k = KERNEL_SIZES[seeding.choice(gen, len(KERNEL_SIZES))]
    mix = round(seeding.uniform(gen, 1.0 - alpha, 1.0), 6)
    return {"k": k, "mix": mix, "seed": seed}


def draw_stats(gen: torch.Generator, alpha: float, strength: float) -> dict:
    """Random style statistics' draw: a seed; the spread and the blend with the input are the settings."""
    return {"seed": seeding.randint(gen, 0, 2**31 - 1), "strength": strength, "alpha": alpha}


def randomize(x: torch.Tensor, method: str, params: dict, model=None) -> torch.Tensor:
    """Apply a drawn randomiser (``randconv`` or ``stats``) to ``N x 3 x H x W`` float 0..1; ``stats`` works
    at relu4_1 of an AdaIN ``model`` when one is given, else on a Laplacian pyramid."""
    if method == "randconv":
        return randconv(x, params["k"], params["mix"], params["seed"])
    if model is not None:
        y = random_feature_stats(model, x, params["seed"], params["strength"])
    else:
        y = random_stats(x, params["seed"], params["strength"])
    a = params["alpha"]
    return a * y + (1 - a) * x


def randconv(x: torch.Tensor, k: int, mix: float, seed: int) -> torch.Tensor:
    """``x``: ``N x C x H x W`` float 0..1 -> same, randomly convolved and mixed."""
    c = x.shape[1]
    gen = seeding.generator(seed, stream="randconv")
    w = torch.randn(c, c, k, k, generator=gen, device=gen.device) * (1.0 / (k * k * c)) ** 0.5
    w = w.to(x.device, x.dtype)
    y = F.conv2d(F.pad(x, (k // 2,) * 4, mode="reflect") if k > 1 else x, w)
    xm, xs = calc_mean_std(x)
    ym, ys = calc_mean_std(y)
    y = (y - ym) / ys * xs + xm
    return (mix * x + (1 - mix) * y).clamp(0, 1)


def _blur_down(x):
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)[..., ::2, ::2]


def laplacian_pyramid(x: torch.Tensor, levels: int):
    bands = []
    cur = x
    for _ in range(levels):
        if min(cur.shape[-2:]) < 4:
            break
        low = _blur_down(cur)
        up = F.interpolate(low, size=cur.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(cur - up)
        cur = low
    return bands, cur


def collapse(bands, low):
    cur = low
    for b in reversed(bands):
        cur = F.interpolate(cur, size=b.shape[-2:], mode="bilinear", align_corners=False) + b
    return cur


def random_stats(x: torch.Tensor, seed: int, strength: float = 0.5, levels: int = 4) -> torch.Tensor:
    """Weight-free AdaIN with random style statistics on a Laplacian pyramid (see module doc)."""
    gen = seeding.generator(seed, stream="random-stats")
    bands, low = laplacian_pyramid(x, levels)
    n, c = x.shape[:2]
    out_bands = []
    for b in bands:
        m, s = calc_mean_std(b)
        f = torch.exp(torch.randn(n, c, 1, 1, generator=gen, device=gen.device) * strength).to(x)
        out_bands.append(adain(b, m, s * f))
    m, s = calc_mean_std(low)
    shift = (torch.randn(n, c, 1, 1, generator=gen, device=gen.device) * 0.25 * strength).to(x)
    f = torch.exp(torch.randn(n, c, 1, 1, generator=gen, device=gen.device) * strength).to(x)
    low = adain(low, (m + shift).clamp(0, 1), s * f)
    return collapse(out_bands, low).clamp(0, 1)


def random_feature_stats(model, x: torch.Tensor, seed: int, strength: float = 0.5) -> torch.Tensor:
    """AdaIN with random style statistics at relu4_1 of an AdaIN model: mean and std of every channel
    scaled by log-normal factors."""
    gen = seeding.generator(seed, stream="random-feature-stats")
    with torch.no_grad():
        fc = model.encode(x)
        m, s = calc_mean_std(fc)
        n, c = m.shape[:2]
        fm = torch.exp(torch.randn(n, c, 1, 1, generator=gen, device=gen.device) * strength).to(x)
        fs = torch.exp(torch.randn(n, c, 1, 1, generator=gen, device=gen.device) * strength).to(x)
        out = model.decoder(adain(fc, m * fm, s * fs))
    return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
