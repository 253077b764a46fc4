"""Fast style transfer (Johnson, Alahi & Fei-Fei, ECCV 2016): train an image-transformation network for one
style with a perceptual loss, save it, then stylise an image in one forward pass.

The network is Johnson et al.'s (9x9 conv, two stride-2 convs, five residual blocks, two upsampling convs,
9x9 conv) with instance normalisation (Ulyanov et al.) and reflection padding; ``width`` (32 in the paper)
scales every layer. The perceptual loss is alpha * content (feature MSE at one layer) + beta * style
(fused Gram loss, ``losses.fused_style_loss``) + tv * total variation, on VGG19 features or the weight-free
random multi-scale features.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from augstudio.core.base import seeding
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import JobCancelled, ModelError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.io.images import atomic_write_bytes

from .adain import _Crops, list_images
from .common import StyleResult, resize, to_float, to_uint8
from .features import GATYS_STYLE_LAYERS, build_uninitialised, init_random_, make_features
from .losses import fused_style_loss, scaled_gram

FORMAT = "augstudio-fast-style"


class _ConvIN(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, relu=True, norm=True, up=1):
        mods: list[nn.Module] = []
        if up > 1:
            mods.append(nn.Upsample(scale_factor=up, mode="nearest"))
        mods += [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride)]
        if norm:
            mods.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            mods.append(nn.ReLU())
        super().__init__(*mods)


class _Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(_ConvIN(c, c, 3), _ConvIN(c, c, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class TransformerNet(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = int(width)
        self.width = w
        self.net = nn.Sequential(
            _ConvIN(3, w, 9), _ConvIN(w, 2 * w, 3, 2), _ConvIN(2 * w, 4 * w, 3, 2),
            *[_Residual(4 * w) for _ in range(5)],
            _ConvIN(4 * w, 2 * w, 3, up=2), _ConvIN(2 * w, w, 3, up=2),
            _ConvIN(w, 3, 9, relu=False, norm=False),
        )

    def forward(self, x):
        """0..1 in, 0..1-ish out (clamp for display); any size (the output is resized back if odd)."""
        y = self.net(x)
        return y if y.shape[-2:] == x.shape[-2:] else resize(y, x.shape[-2:])


def save_fast(model: TransformerNet, path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": 1, "width": model.width, "meta": dict(meta or {}),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_fast(path, device=None) -> TransformerNet:
    path = Path(path)
    fix = ("Train one for your style with `augstudio style fast-train CONTENT_DIR STYLE_IMAGE --out "
           f"{path.name or 'style.pth'}`.")
    if not path.is_file():
        raise ModelError(f"fast style model '{path}' does not exist. {fix}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot be read ({type(e).__name__}: {e}). {fix}") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ModelError(f"{path}: not an augstudio fast style model (made by `augstudio style fast-train`). {fix}")
    model = build_uninitialised(lambda: TransformerNet(ck["width"]))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"{path}: damaged fast style model: {str(e).splitlines()[0]}. {fix}") from e
    model.meta = ck.get("meta", {})
    return model.to(resolve_device(device)).eval()


@torch.no_grad()
def fast_stylize(model: TransformerNet, image, alpha: float = 1.0, max_size: int | None = None) -> torch.Tensor:
    """Stylise one image (anything ``to_float`` takes); returns ``1 x 3 x H x W`` in 0..1.
    ``alpha`` blends with the input (1 = fully stylised)."""
    dev = next(model.parameters()).device
    x = to_float(image, dev, max_size)
    y = model(x).clamp(0, 1)
    return (alpha * y + (1 - alpha) * x).clamp(0, 1)


def _tv(x):
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def fast_train_job(content_dir, style_image, out_path, features="random", weights="imagenet", width: int = 32,
                   iterations: int = 2000, batch_size: int = 4, size: int = 256, lr: float = 1e-3,
                   content_weight: float = 1.0, style_weight: float = 1e5, tv_weight: float = 1e-2,
                   content_layer: str | None = None, seed: int = 0, device=None,
                   token: CancelToken | None = None, preview_every: int = 50):
    """Train a TransformerNet for ``style_image`` on crops of ``content_dir`` and save it to ``out_path``."""
    token = token or CancelToken()
    dev = resolve_device(device)
    layers = GATYS_STYLE_LAYERS + ("relu2_2",) if features == "vgg19" else None
    net = make_features(features, weights, layers, seed, dev)
    c_layer = content_layer or ("relu2_2" if features == "vgg19" else "scale5")
    crops = _Crops(list_images(content_dir), size, dev)
    style = resize(to_float(style_image, dev), (size, size))
    with torch.no_grad():
        targets = {k: scaled_gram(v) for k, v in net(style).items() if k != c_layer or features != "vgg19"}
    lw = {k: 1.0 / len(targets) for k in targets}
    model = build_uninitialised(lambda: TransformerNet(width))
    init_random_(model, seeding.generator(seed, stream="fast-style-init"))
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = seeding.generator(seed, stream="fast-style-batches")
    fixed = crops.batch(seeding.generator(seed, stream="preview"), 1)
    losses: list[float] = []
    t0 = time.perf_counter()
    for it in range(1, iterations + 1):
        if token.cancelled:
            raise JobCancelled(f"fast-train: cancelled after {it - 1} of {iterations} iterations; nothing written")
        x = crops.batch(gen, batch_size)
        with torch.enable_grad():
            y = model(x)
            fy = net(y)
            with torch.no_grad():
                fx = net(x)[c_layer]
            lc = F.mse_loss(fy[c_layer], fx)
            ls = fused_style_loss({k: v for k, v in fy.items() if k in targets}, targets, lw)
            loss = content_weight * lc + style_weight * ls + tv_weight * _tv(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise ModelError(f"fast-train: the loss became {lv} at iteration {it}; lower --lr (now {lr})")
        losses.append(lv)
        img = None
        if preview_every and (it % preview_every == 0 or it == iterations):
            model.eval()
            img = to_uint8(fast_stylize(model, fixed))
            model.train()
        yield Progress(it, iterations, f"fast-train: loss {lv:.4g}", {"image": img, "loss": lv, "level": 1, "iteration": it})
    model.eval()
    path = save_fast(model, out_path, {"style": str(style_image), "features": str(features),
                                       "iterations": iterations, "size": size})
    return StyleResult(to_uint8(fast_stylize(model, fixed)), losses, time.perf_counter() - t0,
                       {"method": "fast-train", "model": str(path), "skipped": crops.problems})
