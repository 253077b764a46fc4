"""Noise ops. ``sample`` draws one integer noise seed (plain JSON data); ``apply`` makes the noise from it with
the counter-based draws of ``kernels.noise``, so the same record gives the same pixels everywhere: GUI,
export, training, a batch of any size, and any device (the noise is made on the image's device).

Intensities are in units of the 0..1 range (std 0.1 means 25.5 grey levels). Noise is computed on the
(usually small, post-crop) image and rounded once to uint8.

On categorical pictures (wafer maps), gaussian / poisson / speckle noise is refused (it would invent
category values), while ``salt_pepper`` flips dies: each non-background pixel is, with probability
``amount``, switched to another non-background category present in the image (pass <-> fail).
"""

from __future__ import annotations

import torch

from augstudio.core.base import seeding
from augstudio.core.kernels import noise as N

from .base import Op
from .params import Param
from .registry import register

_SEED_MAX = 2**62


class NoiseOp(Op):
    """A noise op: ``noisy(x, params_list, kind)`` works on a batch ``N x C x H x W`` with one record per item
    (each item's noise from its own seed), so one image and a batch are one code path."""

    family = "noise"
    categorical = "refuse"
    categorical_reason = ("its pixel values are category labels, so adding noise would invent categories; "
                          "use salt_pepper, which flips dies between existing categories")

    def sample(self, gen, size):
        return {"seed": seeding.randint(gen, 0, _SEED_MAX)} | self.sample_more(gen, size)

    def sample_more(self, gen, size) -> dict:
        return {}

    def apply(self, x, params, kind):
        return self.apply_batch(x[None], [params], kind)[0]

    def apply_batch(self, x, params_list, kind):
        raise NotImplementedError


def _seeds(params_list) -> list[int]:
    return [int(p["seed"]) for p in params_list]


@register
class GaussianNoise(NoiseOp):
    name = "gaussian_noise"
    summary = "Add Gaussian noise; std in units of the 0..1 range (0.1 = 25.5 grey levels)."
    params = (
        Param("std", "range", [0.0, 0.1], low=0.0, high=1.0, typical=(0.0, 0.3), scalar="upto", help="std range; one number x means [0, x]"),
        Param("mean", "float", 0.0, low=-1.0, high=1.0, help="mean of the noise (0..1 units)"),
        Param("per_channel", "bool", True, help="independent noise per channel (false: the same for all)"),
    )

    def sample_more(self, gen, size):
        return {"std": round(seeding.uniform(gen, *self.std), 6)}

    def apply_batch(self, x, params_list, kind):
        # uint8 + integer noise: each item's table is scaled by its std (and shifted by the mean, rounded to a
        # whole grey level) once, so per pixel there is one lookup and one saturating add
        return N.add_scaled_normal(x, _seeds(params_list), [p["std"] * 255.0 for p in params_list],
                                   int(round(self.mean * 255.0)), x.shape[1] if self.per_channel else 1)


@register
class SpeckleNoise(NoiseOp):
    name = "speckle_noise"
    summary = "Multiplicative noise: x -> x (1 + n), n ~ N(0, std^2) (brighter pixels get more noise)."
    params = (Param("std", "range", [0.0, 0.1], low=0.0, high=2.0, typical=(0.0, 0.5), scalar="upto", help="std range of n"),)

    def sample_more(self, gen, size):
        return {"std": round(seeding.uniform(gen, *self.std), 6)}

    def apply_batch(self, x, params_list, kind):
        return N.speckle_bytes(x, _seeds(params_list), [p["std"] for p in params_list])


@register
class PoissonNoise(NoiseOp):
    name = "poisson_noise"
    summary = ("Shot noise: x -> Poisson(x / 255 * peak) / peak * 255; a lower peak (photons at white) is "
               "noisier.")
    params = (Param("peak", "range", [30.0, 300.0], low=0.1, high=1e6, typical=(5.0, 1000.0), scalar="exact",
                    help="photon count of a white pixel, drawn from [low, high]"),)

    def sample_more(self, gen, size):
        return {"peak": round(seeding.uniform(gen, *self.peak), 4)}

    def apply_batch(self, x, params_list, kind):
        return N.poisson_bytes(x, _seeds(params_list), [p["peak"] for p in params_list])


@register
class SaltPepper(NoiseOp):
    name = "salt_pepper"
    summary = ("Set a random fraction of pixels to black (pepper) or white (salt). On categorical images "
               "it flips dies instead: a non-background pixel switches to another non-background category "
               "present in the image (e.g. pass <-> fail on a wafer map).")
    categorical = "custom"
    params = (
        Param("amount", "range", [0.0, 0.05], low=0.0, high=1.0, typical=(0.0, 0.2), scalar="upto", help="fraction of pixels hit"),
        Param("salt", "float", 0.5, low=0.0, high=1.0, help="share of hits that become white (the rest black)"),
        Param("background", "int", 0, low=0, high=255, help="categorical only: the category never touched (off-wafer)"),
    )

    def sample_more(self, gen, size):
        return {"amount": round(seeding.uniform(gen, *self.amount), 6)}

    def apply_batch(self, x, params_list, kind):
        n, c, h, w = x.shape
        amounts = [p["amount"] for p in params_list]
        if kind != "categorical":
            return N.salt_pepper_bytes(x, _seeds(params_list), amounts, self.salt)
        u = N.uniform(_seeds(params_list), (2, h, w), x.device)  # [:, 0]: hit?, [:, 1]: the category
        hit = u[:, 0] < torch.tensor(amounts, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return torch.stack([self._flip_dies(x[i], hit[i], u[i, 1]) for i in range(n)])  # categories per image

    def _flip_dies(self, x, hit, u):
        cats = [int(v) for v in torch.unique(x).tolist() if int(v) != self.background]
        if len(cats) < 2:
            return x.clone()
        table = torch.tensor(cats, dtype=x.dtype, device=x.device)
        out = x.clone()
        plane = out[0]
        mask = hit & (plane != self.background)
        if not bool(mask.any()):
            return out
        cur = plane[mask].to(torch.int64)
        pos = torch.searchsorted(table.to(torch.int64), cur)  # index of the current category
        shift = 1 + (u[mask] * (len(cats) - 1)).to(torch.int64).clamp_(max=len(cats) - 2)
        plane[mask] = table[(pos + shift) % len(cats)]
        return out


__all__ = ["NoiseOp", "GaussianNoise", "SpeckleNoise", "PoissonNoise", "SaltPepper"]
