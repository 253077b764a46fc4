"""Batch ops that mix pairs of images and their labels: Mixup, CutMix, PuzzleMix.

Each draws a lambda from Beta(alpha, alpha) and a random pairing (a permutation of the batch: image i is
mixed with image perm[i]), as the reference implementations do; labels are mixed with the same weight as
the pixels (for CutMix the exact pasted area, for PuzzleMix the mask's mean). Mixup and CutMix also have
timm's per-image (``mode: elem``) and per-pair (``mode: pair``) lambdas, and ``one_of`` under ``batch:``
picks one of them by weight (timm's switch probability), per batch or per image.
"""

from __future__ import annotations

import math

import torch

from augstudio.core.base.errors import ParamError, RecipeError
from augstudio.core.methods.puzzlemix import image_saliency, mix_with, puzzlemix_pairs, saliency

from .base import BatchOp
from .params import Param
from .registry import get_batch_op, register_batch
from .step import Step, parse_steps


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


_MODE = Param("mode", "choice", "batch", choices=("batch", "pair", "elem"),
              help="batch: one lambda for the batch (random pairs); elem: a lambda per image; pair: images i and "
                   "n-1-i swap with one lambda per pair (timm's modes)")


def _lambdas(gen, alpha: float, n: int, mode: str) -> tuple[object, list[int]]:
    """``(lam, perm)`` for ``mode``: batch -> one float and a random pairing; elem -> one lambda per image and
    a random pairing; pair -> one lambda per pair, image i paired with n-1-i (timm's pairing)."""
    if mode == "batch":
        return sample_beta(gen, alpha, alpha), sample_pairing(gen, n)
    if mode == "elem":
        return [sample_beta(gen, alpha, alpha) for _ in range(n)], sample_pairing(gen, n)
    half = [sample_beta(gen, alpha, alpha) for _ in range(n // 2)]
    lam = half + ([1.0] if n % 2 else []) + half[::-1]  # an odd middle image is its own pair: kept
    return lam, list(range(n - 1, -1, -1))


def _column(lam, like):
    """A lambda (one float, or one per image) shaped to broadcast over ``like``'s first axis."""
    if isinstance(lam, (list, tuple)):
        return torch.tensor(lam, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))
    return float(lam)


# -- mixup ------------------------------------------------------------------------------------------------
def mixup(images, labels, lam, perm):
    """x = lam * x + (1 - lam) * x[perm]; y likewise (Zhang et al. 2018). ``lam``: one float or one per image."""
    li, ly = _column(lam, images), _column(lam, labels)
    return li * images + (1 - li) * images[perm], ly * labels + (1 - ly) * labels[perm]


@register_batch
class Mixup(BatchOp):
    name = "mixup"
    summary = "Mixup: blend each image with a partner, lambda ~ Beta(alpha, alpha); labels blended alike."
    params = (_ALPHA, _MODE)

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        lam, perm = _lambdas(gen, self.alpha, n, self.mode)
        return {"lam": lam, "perm": perm}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        perm = _perm(params, images.shape[0], images.device)
        return mixup(images, soft_labels, params["lam"], perm)


# -- cutmix -----------------------------------------------------------------------------------------------
def cutmix_box(lam: float, size: tuple[int, int], cy: int, cx: int) -> list[int]:
    """The CutMix box [y1, y2, x1, x2]: sides int(side * sqrt(1 - lam)), centred at (cy, cx), clipped to the
    image (timm's ``rand_bbox``)."""
    h, w = size
    rat = math.sqrt(max(0.0, 1.0 - lam))
    ch, cw = int(h * rat), int(w * rat)
    y1, y2 = min(max(cy - ch // 2, 0), h), min(max(cy + (ch + 1) // 2, 0), h)
    x1, x2 = min(max(cx - cw // 2, 0), w), min(max(cx + (cw + 1) // 2, 0), w)
    return [y1, y2, x1, x2]


def _area_lam(box, size) -> float:
    """1 - the pasted box's share of the image: the exact label weight of the image itself."""
    return 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(max(size[0] * size[1], 1))


def cutmix(images, labels, box, perm):
    """Paste the partner's box; returns (images, labels, lam) with lam = 1 - exact pasted area share.
    ``box``: one [y1, y2, x1, x2] for the batch, or one per image."""
    h, w = images.shape[-2:]
    out = images.clone()
    if box and isinstance(box[0], (list, tuple)):
        for i, (y1, y2, x1, x2) in enumerate(box):
            out[i, ..., y1:y2, x1:x2] = images[perm[i], ..., y1:y2, x1:x2]
        lam = [_area_lam(b, (h, w)) for b in box]
    else:
        y1, y2, x1, x2 = box
        out[..., y1:y2, x1:x2] = images[perm][..., y1:y2, x1:x2]
        lam = _area_lam(box, (h, w))
    ly = _column(lam, labels)
    return out, ly * labels + (1 - ly) * labels[perm], lam


@register_batch
class CutMix(BatchOp):
    name = "cutmix"
    summary = ("CutMix: paste a box of a partner image (area 1 - lambda, lambda ~ Beta(alpha, alpha)); "
               "labels mixed by the exact pasted area.")
    params = (_ALPHA, _MODE)

    def _box(self, gen, lam, size):
        h, w = size
        cy = int(torch.randint(0, max(h, 1), (), generator=gen, device=gen.device).item())
        cx = int(torch.randint(0, max(w, 1), (), generator=gen, device=gen.device).item())
        return [cy, cx], cutmix_box(lam, (h, w), cy, cx)

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        if self.mode == "batch":
            lam = sample_beta(gen, self.alpha, self.alpha)
            center, box = self._box(gen, lam, size)
            return {"lam_drawn": lam, "center": center, "box": box, "lam": _area_lam(box, size),
                    "perm": sample_pairing(gen, n)}
        lams, perm = _lambdas(gen, self.alpha, n, self.mode)
        drawn = [self._box(gen, lam, size) for lam in lams]
        if self.mode == "pair":  # both images of a pair swap the same box
            drawn = [drawn[min(i, n - 1 - i)] for i in range(n)]
        boxes = [b for _, b in drawn]
        return {"lam_drawn": lams, "center": [c for c, _ in drawn], "box": boxes,
                "lam": [_area_lam(b, size) for b in boxes], "perm": perm}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        perm = _perm(params, images.shape[0], images.device)
        out, y, _lam = cutmix(images, soft_labels, params["box"], perm)
        return out, y


# -- one of several mixing ops (timm's "mixup or cutmix, switch probability") ------------------------------------
@register_batch
class BatchOneOf(BatchOp):
    name = "one_of"
    summary = ("Apply one of the nested batch steps, picked by weight (e.g. mixup or cutmix with timm's switch "
               "probability); per batch, or per image with per: image.")
    params = (
        Param("steps", "steps", [], help="the nested batch steps"),
        Param("weights", "numbers", None, optional=True, low=0.0, high=1e6,
              help="relative weight of each nested step (default: equal)"),
        Param("per", "choice", "batch", choices=("batch", "image"),
              help="batch: one step for the whole batch; image: a step per image (timm's elem mode)"),
    )

    @classmethod
    def validate(cls, values: dict, where: str = "") -> dict:
        def plain(v):
            return [s.to_dict() if isinstance(s, Step) else s for s in v] if isinstance(v, list) else v

        out = super().validate({k: plain(v) if k == "steps" else v for k, v in values.items()}, where)
        out["steps"] = parse_steps(out["steps"], where=f"{where}'steps' ", batch=True)
        if not out["steps"]:
            raise ParamError(f"{where}one_of under 'batch:' needs at least one nested step")
        if out["weights"] is not None and len(out["weights"]) != len(out["steps"]):
            raise ParamError(f"{where}one_of: {len(out['weights'])} weights for {len(out['steps'])} steps")
        return out

    @property
    def nested(self):
        if not hasattr(self, "_nested"):
            self._nested = [get_batch_op(s.op)(**s.values) for s in self.steps]
        return self._nested

    def _choose(self, gen) -> int:
        w = self.weights or [1.0] * len(self.steps)
        u = torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item() * sum(w)
        acc = 0.0
        for i, wi in enumerate(w):
            acc += wi
            if u < acc:
                return i
        return len(w) - 1

    def sample(self, gen, n=1, size=(0, 0), num_classes=0):
        if self.per == "batch":
            i = self._choose(gen)
            return {"choice": i, "params": self.nested[i].sample(gen, n, size, num_classes)}
        choice = [self._choose(gen) for _ in range(n)]
        return {"choice": choice, "params": [op.sample(gen, n, size, num_classes) for op in self.nested]}

    def mix(self, images, soft_labels, params, model=None):
        if self.per == "batch":
            return self.nested[params["choice"]].mix(images, soft_labels, params["params"], model)
        # per image: every nested step mixes the whole batch from the originals; each image keeps its pick
        outs = [op.mix(images, soft_labels, p, model) for op, p in zip(self.nested, params["params"])]
        pick = torch.tensor(params["choice"], device=images.device)
        x = torch.stack([o[0] for o in outs])[pick, torch.arange(images.shape[0], device=images.device)]
        y = torch.stack([o[1] for o in outs])[pick, torch.arange(images.shape[0], device=images.device)]
        return x, y, {}

    def apply_to_batch(self, images, soft_labels, params, model=None):
        x, y, _ = self.mix(images, soft_labels, params, model)
        return x, y


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
