"""Batch ops that mix pairs of images and their labels: Mixup, CutMix, PuzzleMix.

Each draws one lambda per batch from Beta(alpha, alpha) and a random pairing (a permutation of the batch:
image i is mixed with image perm[i]), as the reference implementations do; labels are mixed with the
same weight as the pixels (for CutMix the exact pasted area, for PuzzleMix the mask's mean).
"""

from __future__ import annotations

import math

import torch

from augstudio.core.base.errors import RecipeError
from augstudio.core.methods.puzzlemix import image_saliency, mix_with, puzzlemix_pairs, saliency

from .base import BatchOp
from .params import Param
from .registry import register_batch


# -- random draws from an explicit generator -------------------------------------------------------------
def sample_gamma(gen: torch.Generator, shape: float) -> float:
    """One Gamma(shape, 1) draw (Marsaglia & Tsang 2000) using only ``gen``."""
    if shape < 1.0:  # boost: Gamma(a) = Gamma(a + 1) * U^(1/a)
        g = sample_gamma(gen, shape + 1.0)
        u = torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item()
        return g * max(u, 1e-300) ** (1.0 / shape)
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = torch.randn((), generator=gen, dtype=torch.float64, device=gen.device).item()
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        u = torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item()
        if u < 1.0 - 0.0331 * x ** 4 or math.log(max(u, 1e-300)) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return d * v


def sample_beta(gen: torch.Generator, a: float, b: float) -> float:
    """One Beta(a, b) draw as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b)."""
    x = sample_gamma(gen, a)
    y = sample_gamma(gen, b)
    return x / (x + y) if x + y > 0 else 0.5


def sample_pairing(gen: torch.Generator, n: int) -> list[int]:
    return torch.randperm(n, generator=gen, device=gen.device).tolist()


def _perm(params: dict, n: int, device):
    perm = params.get("perm") or list(range(n))
    if len(perm) != n:
        raise RecipeError(f"batch op params: pairing has {len(perm)} entries for a batch of {n}")
    return torch.as_tensor(perm, dtype=torch.long, device=device)


_ALPHA = Param("alpha", "float", 1.0, low=1e-3, high=100.0, typical=(0.05, 4.0),
               help="lambda ~ Beta(alpha, alpha); 1 = uniform, small = mostly one image")


# -- mixup ------------------------------------------------------------------------------------------------
def mixup(images, labels, lam: float, perm):
    """x = lam * x + (1 - lam) * x[perm]; y likewise (Zhang et al. 2018)."""
    return lam * images + (1 - lam) * images[perm], lam * labels + (1 - lam) * labels[perm]


@register_batch
class Mixup(BatchOp):
    name = "mixup"
    summary = "Mixup: blend each image with a partner, lambda ~ Beta(alpha, alpha); labels blended alike."
    params = (_ALPHA,)

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        lam = sample_beta(gen, self.alpha, self.alpha)
        return {"lam": lam, "perm": sample_pairing(gen, n)}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        perm = _perm(params, images.shape[0], images.device)
        return mixup(images, soft_labels, float(params["lam"]), perm)


# -- cutmix -----------------------------------------------------------------------------------------------
def cutmix_box(lam: float, size: tuple[int, int], cy: int, cx: int) -> list[int]:
    """The CutMix box [y1, y2, x1, x2]: sides sqrt(1 - lam) of the image, centred at (cy, cx), clipped."""
    h, w = size
    rat = math.sqrt(max(0.0, 1.0 - lam))
    ch, cw = int(h * rat), int(w * rat)
    y1, y2 = min(max(cy - ch // 2, 0), h), min(max(cy + ch // 2, 0), h)
    x1, x2 = min(max(cx - cw // 2, 0), w), min(max(cx + cw // 2, 0), w)
    return [y1, y2, x1, x2]


def cutmix(images, labels, box, perm):
    """Paste the partner's box; returns (images, labels, lam) with lam = 1 - exact pasted area share."""
    y1, y2, x1, x2 = box
    h, w = images.shape[-2:]
    out = images.clone()
    out[..., y1:y2, x1:x2] = images[perm][..., y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    return out, lam * labels + (1 - lam) * labels[perm], lam


@register_batch
class CutMix(BatchOp):
    name = "cutmix"
    summary = ("CutMix: paste a box of a partner image (area 1 - lambda, lambda ~ Beta(alpha, alpha)); "
               "labels mixed by the exact pasted area.")
    params = (_ALPHA,)

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        lam = sample_beta(gen, self.alpha, self.alpha)
        h, w = size
        cy = int(torch.randint(0, max(h, 1), (), generator=gen, device=gen.device).item())
        cx = int(torch.randint(0, max(w, 1), (), generator=gen, device=gen.device).item())
        box = cutmix_box(lam, (h, w), cy, cx)
        area = (box[1] - box[0]) * (box[3] - box[2]) / float(max(h * w, 1))
        return {"lam_drawn": lam, "center": [cy, cx], "box": box, "lam": 1.0 - area,
                "perm": sample_pairing(gen, n)}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        perm = _perm(params, images.shape[0], images.device)
        out, y, _lam = cutmix(images, soft_labels, params["box"], perm)
        return out, y


# -- puzzlemix --------------------------------------------------------------------------------------------
@register_batch
class PuzzleMix(BatchOp):
    name = "puzzlemix"
    summary = ("PuzzleMix (Kim et al. 2020): saliency-aware mask on a 2^k block grid (graph-cut energy) "
               "plus optimal transport of salient blocks; labels mixed by the mask's mean.")
    needs_model = True
    params = (
        _ALPHA,
        Param("n_labels", "int", 3, low=2, high=4, help="mask levels: 2 = {0, 1}, 3 = {0, 0.5, 1}"),
        Param("beta", "float", 1.2, low=0.0, high=100.0, typical=(0.0, 4.0), help="label smoothness"),
        Param("gamma", "float", 0.5, low=0.0, high=100.0, typical=(0.0, 4.0), help="data-dependent smoothness"),
        Param("eta", "float", 0.2, low=0.0, high=100.0, typical=(0.0, 1.0), help="weight of the lambda prior"),
        Param("neigh_size", "int", 4, low=1, high=64, typical=(1, 8), help="pooling for neighbouring pixel differences"),
        Param("transport", "bool", True, help="move salient blocks towards the mask (optimal transport)"),
        Param("t_eps", "float", 0.8, low=0.0, high=100.0, typical=(0.0, 2.0), help="transport cost coefficient"),
        Param("block_num", "choice", "random", choices=("random", 2, 4, 8, 16),
              help="blocks per side; random = 2^k, k uniform in 1..4 (official)"),
        Param("model", "path", None, optional=True,
              help="classifier for saliency in export / GUI (torchvision name or checkpoint); training "
                   "uses the model being trained; none = image-gradient saliency"),
    )

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        lam = sample_beta(gen, self.alpha, self.alpha)
        k = int(torch.randint(1, 5, (), generator=gen, device=gen.device).item())
        bn = 2 ** k if self.block_num == "random" else int(self.block_num)
        return {"lam": lam, "block_num": bn, "perm": sample_pairing(gen, n)}

    def model_spec(self):
        return self.model

    def run(self, images, labels, params, model=None):
        """The full result (mask, transported images, saliency ...) for the GUI / CLI / export."""
        perm = _perm(params, images.shape[0], images.device)
        x = images.float()
        if model is not None:
            sal = saliency(model, x, labels)
        else:
            sal = image_saliency(_to01(x))
        x01 = _to01(x)
        res = puzzlemix_pairs(x01, x01[perm], sal, sal[perm], float(params["lam"]), int(params["block_num"]),
                              beta=self.beta, gamma=self.gamma, eta=self.eta, neigh_size=self.neigh_size,
                              n_labels=self.n_labels, transport=self.transport, t_eps=self.t_eps)
        if x01 is not x:  # mix the images as given (normalised or not): same mask and transport
            res.mixed = mix_with(x, x[perm], res)
        return res

    def mix(self, images, soft_labels, params, model=None):
        perm = _perm(params, images.shape[0], images.device)
        res = self.run(images, soft_labels, params, model)
        r = res.ratio.to(soft_labels.dtype).unsqueeze(-1)
        details = {"block_mask": res.block_mask, "ratio": res.ratio,
                   "saliency": ["model" if model is not None else "image-gradient"] * images.shape[0]}
        return res.mixed.to(images.dtype), r * soft_labels + (1 - r) * soft_labels[perm], details

    def apply_to_batch(self, images, soft_labels, params, model=None):
        images, soft_labels, _ = self.mix(images, soft_labels, params, model)
        return images, soft_labels


def _to01(x):
    """Images as 0..1 for the pixel-difference term: as they are when already in 0..1, else each channel
    min-max scaled over the batch (normalised training batches)."""
    if x.numel() == 0 or (float(x.min()) >= 0.0 and float(x.max()) <= 1.0):
        return x
    lo = x.amin(dim=(0, 2, 3), keepdim=True)
    hi = x.amax(dim=(0, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)
