"""Gradient saliency and weakly supervised localisation.

Methods (``method=``), all for a target class (default: the predicted one), batched, on the model's device:

* ``"vanilla"`` (Simonyan, Vedaldi & Zisserman 2014): ``M = max_c |d S_t / d x_c|``, the absolute gradient
  of the class score (the logit, before softmax) w.r.t. the input, reduced over channels by max.
* ``"smoothgrad"`` (Smilkov et al. 2017): the gradient averaged over ``samples`` copies of the input with
  Gaussian noise ``sigma = noise * (max(x) - min(x))`` added (noise from an explicit generator seeded by
  ``seed``), then ``max_c |.|`` as above.
* ``"gradxinput"`` (Shrikumar et al. 2016): ``|sum_c x_c * d S_t / d x_c|`` on the model's input tensor.

Gradients are taken with ``torch.enable_grad()`` (grad mode is thread-local, so this works in GUI
workers and under ``torch.no_grad``). Maps are computed at the model's input size and resized
(bilinear) back to each picture's size.

Localisation (``saliency_box``): blur the map with a Gaussian (``blur`` x the shorter side), scale it to
0..1 by its maximum, keep pixels >= ``threshold``, take the largest connected region (8-connectivity,
``scipy.ndimage.label``) and return its bounding box ``[x0, y0, x1, y1]`` (x1, y1 exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from augstudio.core.base import seeding
from augstudio.core.base.errors import ModelError
from augstudio.core.io.images import Picture
from augstudio.core.kernels import noise as N
from augstudio.core.models.loading import LoadedModel, picture_channels, preprocess

from .saliency_options import COLORMAPS, DEFAULT_BLUR, DEFAULT_THRESHOLD, LOCALISE, METHODS, SCORES, VIEWS  # noqa: F401 (part of this module's API)


@dataclass
class SaliencyResult:
    maps: list[torch.Tensor]  # one float H x W map per picture, at the picture's size, >= 0
    targets: list[int]  # the class each map explains
    predicted: list[int]
    probs: torch.Tensor  # N x classes softmax
    method: str

    def class_name(self, i: int, classes) -> str:
        t = self.targets[i]
        return str(classes[t]) if classes and 0 <= t < len(classes) else str(t)


def input_gradients(module, x: torch.Tensor, target: torch.Tensor | None = None, score: str = "logit"):
    """(d S_t / d x, logits) for a float batch ``x``; ``target`` None -> the predicted class."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = module(xg)
        if logits.dim() != 2:
            raise ModelError(f"the model returned shape {tuple(logits.shape)}; a classifier must return "
                             "N x classes logits")
        t = logits.argmax(1) if target is None else target.to(logits.device)
        out = torch.log_softmax(logits, 1) if score == "logprob" else logits
        score_sum = out.gather(1, t.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score_sum, xg)
    return grad.detach(), logits.detach()


def saliency_maps(module, x: torch.Tensor, method: str = "vanilla", target=None, samples: int = 16,
                  noise: float = 0.15, seed: int = 0, score: str = "logit") -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``N x H x W`` (model input size) and logits ``N x K`` for a preprocessed batch ``x``."""
    if method not in METHODS:
        raise ModelError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    if target is not None and not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target, dtype=torch.long, device=x.device).view(-1).expand(x.shape[0])
    if score not in SCORES:
        raise ModelError(f"unknown saliency score {score!r}; choose one of {', '.join(SCORES)}")
    grad, logits = input_gradients(module, x, target, score)
    if target is None:
        target = logits.argmax(1)
    if method == "vanilla":
        return grad.abs().amax(1), logits
    if method == "gradxinput":
        return (grad * x).sum(1).abs(), logits
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    sigma = noise * span
    acc = torch.zeros_like(x)
    for k in range(max(1, int(samples))):
        # the noise of sample k is made on the batch's device from the seed path (the same on any device)
        eps = N.standard_normal([seeding.derive_seed(seed, "smoothgrad", k)], tuple(x.shape), x.device)[0]
        g, _ = input_gradients(module, x + sigma * eps.to(x.dtype), target, score)
        acc += g
    return (acc / max(1, int(samples))).abs().amax(1), logits


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _undo_dihedral(m: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    m = torch.rot90(m, -k, dims=(-2, -1)) if k else m
    return m.flip(-1) if flip else m


def averaged_maps(module, x: torch.Tensor, method: str = "vanilla", target=None, samples: int = 16,
                  noise: float = 0.15, seed: int = 0, score: str = "logit", views: str = "d4"):
    """Maps averaged over the flips and quarter turns of the input (``views="d4"``: 8 views for square
    inputs, 4 flips otherwise; ``"none"``: the input only), each mapped back to the input's frame. The
    target defaults to the class predicted on the unchanged input. Like SmoothGrad's noise, the views
    average away gradient detail that depends on orientation. Returns (maps, logits of the input)."""
    if views not in VIEWS:
        raise ModelError(f"unknown saliency views {views!r}; choose one of {', '.join(VIEWS)}")
    maps, logits = saliency_maps(module, x, method, target, samples, noise, seed, score)
    if views == "none":
        return maps, logits
    t = logits.argmax(1) if target is None else target
    square = x.shape[-1] == x.shape[-2]
    combos = [(k, f) for f in (False, True) for k in ((0, 1, 2, 3) if square else (0, 2))][1:]
    acc = maps.clone()
    for k, f in combos:
        m, _ = saliency_maps(module, _dihedral(x, k, f), method, t, samples, noise, seed, score)
        acc += _undo_dihedral(m, k, f)
    return acc / (len(combos) + 1), logits


def compute_saliency(loaded: LoadedModel, pictures, method: str = "vanilla", target=None, samples: int = 16,
                     noise: float = 0.15, seed: int = 0, batch_size: int = 16, cancel=None,
                     score: str = "logit", views: str = "none", scales=(1.0,)) -> SaliencyResult:
    """Saliency of ``loaded`` for a list of Pictures; each map comes back at its picture's size.

    ``views="d4"`` averages the maps over flips and quarter turns (see ``averaged_maps``). ``scales``
    runs the model at these multiples of its input size (size-agnostic models such as the probe) and
    averages the maps, each scaled to a maximum of 1 first; the target and the reported probabilities come
    from the first scale. ``LOCALISE`` holds the settings measured for boxes.
    """
    if isinstance(pictures, Picture):
        pictures = [pictures]
    scales = tuple(float(f) for f in scales) or (1.0,)
    if any(f <= 0 for f in scales):
        raise ModelError(f"saliency: scales must be positive, got {scales}")
    nclass = loaded.num_classes
    if target is not None and nclass and not 0 <= int(target) < nclass:
        raise ModelError(f"saliency: target class {target} is out of range for {loaded.name} ({nclass} classes)")
    maps, targets, preds, probs = [], [], [], []
    was_training = loaded.module.training
    loaded.module.eval()
    try:
        for i in range(0, len(pictures), batch_size):
            if cancel is not None:
                cancel.check(f"saliency, image {i + 1} of {len(pictures)}")
            chunk = pictures[i:i + batch_size]
            tgt = None if target is None else torch.full((len(chunk),), int(target), dtype=torch.long)
            acc = None
            for si, f in enumerate(scales):
                base = loaded.input_size or tuple(chunk[0].size)
                size = None if f == 1.0 else (max(8, round(base[0] * f)), max(8, round(base[1] * f)))
                x = preprocess(chunk, loaded, size=size)
                m, lg = averaged_maps(loaded.module, x, method, tgt, samples, noise, seed, score, views)
                if si == 0:
                    logits = lg
                    pred = lg.argmax(1)
                    tgt = pred if tgt is None else tgt.to(pred.device)
                m = m.float().cpu()
                if len(scales) > 1:
                    m = m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
                    m = F.interpolate(m[:, None], size=tuple(chunk[0].size), mode="bilinear", align_corners=False)[:, 0]
                acc = m if acc is None else acc + m
            m = acc / len(scales)
            for j, pic in enumerate(chunk):
                mj = m[j]
                if tuple(mj.shape) != tuple(pic.size):
                    mj = F.interpolate(mj[None, None], size=pic.size, mode="bilinear", align_corners=False)[0, 0]
                maps.append(mj.clamp_min(0))
            targets += tgt.cpu().tolist()
            preds += pred.cpu().tolist()
            probs.append(torch.softmax(logits.float(), 1).cpu())
    finally:
        loaded.module.train(was_training)
    return SaliencyResult(maps, targets, preds, torch.cat(probs), method)


def smooth_map(m, blur: float = DEFAULT_BLUR) -> np.ndarray:
    """The map as float64 numpy, Gaussian-blurred with sigma = ``blur`` x the shorter side, scaled to 0..1."""
    from scipy import ndimage  # deferred: scipy

    a = m.detach().cpu().double().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64)
    if blur > 0:
        a = ndimage.gaussian_filter(a, sigma=blur * min(a.shape), mode="nearest")
    top = a.max()
    return a / top if top > 0 else np.zeros_like(a)


def saliency_box(m, threshold: float = DEFAULT_THRESHOLD, blur: float = DEFAULT_BLUR) -> list[int] | None:
    """Bounding box ``[x0, y0, x1, y1]`` (exclusive ends) of the largest region of the smoothed map at or
    above ``threshold`` x its maximum; None for an all-zero map."""
    from scipy import ndimage  # deferred: scipy

    a = smooth_map(m, blur)
    if not a.any():
        return None
    mask = a >= threshold
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    keep = int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(lab == keep)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def box_iou(a, b) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (exclusive ends)."""
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# -- drawing -----------------------------------------------------------------------------------------------
_ANCHORS = {
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
    "viridis": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
    "jet": [(0, 0, 143), (0, 112, 255), (127, 255, 127), (255, 143, 0), (128, 0, 0)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}


def colormap_lut(name: str = "inferno") -> np.ndarray:
    """A 256 x 3 uint8 lookup table (piecewise-linear through a few anchor colours of the named map)."""
    if name not in _ANCHORS:
        raise ModelError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    pos = np.linspace(0, 255, len(anchors))
    t = np.arange(256)
    return np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], 1).round().astype(np.uint8)


def overlay(picture, m, opacity: float = 0.5, colormap: str = "inferno", box=None, threshold: float | None = None,
            blur: float = DEFAULT_BLUR, box_color=(0, 255, 0)) -> np.ndarray:
    """An H x W x 3 uint8 image: the picture (as RGB) blended with the coloured smoothed map, box drawn.

    With ``threshold`` set, map values below it are not coloured (the picture shows through).
    """
    rgb = (picture_channels(picture, "rgb").permute(1, 2, 0).numpy() * 255.0)
    a = smooth_map(m, blur)
    heat = colormap_lut(colormap)[np.clip(np.rint(a * 255), 0, 255).astype(np.intp)].astype(np.float64)
    alpha = np.full(a.shape, float(np.clip(opacity, 0.0, 1.0)))
    if threshold is not None:
        alpha = np.where(a >= threshold, alpha, 0.0)
    out = rgb * (1 - alpha[..., None]) + heat * alpha[..., None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if box is not None:
        draw_box(out, box, box_color)
    return out


def draw_box(img: np.ndarray, box, color=(0, 255, 0), width: int | None = None) -> np.ndarray:
    """Draw a rectangle outline in place on an H x W x 3 uint8 array; returns it."""
    h, w = img.shape[:2]
    lw = width or max(1, round(min(h, w) / 100))
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(0, min(w - 1, x0)), max(0, min(h - 1, y0))
    x1, y1 = max(x0 + 1, min(w, x1)), max(y0 + 1, min(h, y1))
    c = np.asarray(color, dtype=np.uint8)
    img[y0:min(y1, y0 + lw), x0:x1] = c
    img[max(y0, y1 - lw):y1, x0:x1] = c
    img[y0:y1, x0:min(x1, x0 + lw)] = c
    img[y0:y1, max(x0, x1 - lw):x1] = c
    return img
