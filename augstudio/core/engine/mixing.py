"""One pair of images mixed by one batch op, with everything the GUI's Mix tab and ``augstudio mix`` show:
the mixed image, the mask, PuzzleMix's saliency maps and transported images."""

from __future__ import annotations

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import ImageError, RecipeError
from augstudio.core.methods.puzzlemix import forward_fn
from augstudio.core.ops.mix import cutmix_box
from augstudio.core.ops.registry import get_batch_op


def mixable(pic):
    """A picture as the float 0..1 RGB ``3 x H x W`` tensor that batch ops mix (categorical maps refused)."""
    if pic.kind == "categorical":
        raise ImageError(None, "categorical (palette) images cannot be mixed: their values are category "
                               "labels, and a blend of labels means nothing. Remove the batch steps for "
                               "this dataset")
    x = pic.pixels
    if pic.kind == "gray":
        x = x.expand(3, -1, -1)
    elif pic.kind == "rgba":
        x = x[:3]
    return x.float() / 255.0


def heat(x):
    """A (H, W) map -> RGB float (3, H, W) in 0..1 (black, red, yellow, white), scaled by its maximum."""
    x = x.float()
    x = x / x.max().clamp_min(1e-12)
    r = (x * 3).clamp(0, 1)
    g = (x * 3 - 1).clamp(0, 1)
    b = (x * 3 - 2).clamp(0, 1)
    return torch.stack([r, g, b])


def mix_pair(xa, xb, method: str, lam: float | None = None, seed: int = 0, model=None, **values) -> dict:
    """Mix two images (float ``C x H x W`` in 0..1; b is resized to a's size) with one batch op.

    Returns a dict: ``mixed`` (C, H, W), ``weights`` (share of a, share of b), ``params`` (plain data),
    ``mask`` (H, W: where a shows), and for PuzzleMix ``sal_a``, ``sal_b``, ``transported_a``,
    ``transported_b``. ``lam`` overrides the drawn lambda; ``seed`` picks the draw (reroll = new seed).
    ``model``: an ``nn.Module`` or ``models.LoadedModel`` for PuzzleMix's saliency (its predicted classes
    are the labels); without one the image-gradient stand-in is used.
    """
    if xb.shape[-2:] != xa.shape[-2:]:
        xb = torch.nn.functional.interpolate(xb[None].float(), size=xa.shape[-2:], mode="bilinear",
                                             align_corners=False, antialias=True)[0]
    if xb.shape[0] != xa.shape[0]:
        raise RecipeError(f"mix: the two images have {xa.shape[0]} and {xb.shape[0]} channels")
    op = get_batch_op(method)(**values)
    size = tuple(xa.shape[-2:])
    gen = seeding.generator(seed, "mix-pair", 0, method)
    params = op.sample(gen, 2, size, 2)
    params["perm"] = [1, 0]
    if lam is not None:
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise RecipeError(f"mix: lambda must be within 0 .. 1, got {lam}")
        params["lam"] = lam
        if method == "cutmix":
            box = cutmix_box(lam, size, *params["center"])
            params.update(lam_drawn=lam, box=box,
                          lam=1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(size[0] * size[1]))
    images = torch.stack([xa.float(), xb.float()])
    soft = torch.eye(2)
    out: dict = {"params": params}
    if method == "puzzlemix":
        labels = soft
        if model is not None:
            fn, _module = forward_fn(model)
            with torch.no_grad():
                labels = fn(images).argmax(1)
        res = op.run(images, labels, params, model)
        out.update(mixed=res.mixed[0], mask=res.mask[0], sal_a=res.sal1[0], sal_b=res.sal2[0],
                   transported_a=res.transported1[0], transported_b=res.transported2[0])
        r = float(res.ratio[0])
        params["block_mask"] = res.block_mask[0].tolist()
    else:
        mixed, y = op.apply_to_batch(images, soft, params)
        out["mixed"] = mixed[0]
        r = float(y[0, 0])
        if method == "cutmix":
            m = torch.ones(size)
            y1, y2, x1, x2 = params["box"]
            m[y1:y2, x1:x2] = 0
            out["mask"] = m
        else:
            out["mask"] = torch.full(size, r)
    out["weights"] = (r, 1.0 - r)
    return out


__all__ = ["mix_pair", "heat", "mixable"]
