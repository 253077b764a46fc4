"""Policy ops: RandAugment, TrivialAugment (wide), AugMix and AutoAugment, built from augstudio's own ops.

Each policy draws, from the step's generator, which sub-ops to run and at which magnitude, then looks the
sub-ops up in the registry by name (``rotate``, ``shear``, ``translate``, ``brightness``, ``saturation``,
``contrast``, ``sharpness``, ``posterize``, ``solarize``, ``autocontrast``, ``equalize``, ``invert``) and
runs them with that exact magnitude. ``sample`` returns the list of sub-ops with their values and
parameters (plain data), so a draw can be shown, written to a manifest and replayed.

Magnitude spaces follow torchvision's (``torchvision.transforms.autoaugment``; a test compares them):

=============  ============================  ================================================
policy op      magnitude (m)                 augstudio op and value
=============  ============================  ================================================
ShearX / Y     tan of the shear angle        shear x / y = -degrees(atan(m)), then a shift
TranslateX/Y   pixels (truncated to int)     translate x / y = int(m) / width (height)
Rotate         degrees                       rotate degrees = m
Brightness     1 + m is the factor           brightness / saturation ("Color") / contrast /
Color ...                                    sharpness factor = 1 + m
Posterize      bits kept                     posterize bits = m (AugMix's 0 bits -> 1, see below)
Solarize       threshold (0..255)            solarize threshold = m
AutoContrast   -                             autocontrast / equalize / invert
=============  ============================  ================================================

Shears are torchvision's (about the top-left corner): augstudio's centred ``shear`` matrix followed by a
shift, resampled once. Known difference: AugMix at severity 9-10 posterizes to 1 bit where torchvision
would keep 0 bits (a black image). Every op here refuses
categorical pictures (the policies contain colour ops).

AugMix's Jensen-Shannon consistency loss (``jsd: true``) is a training-loss option, not a pixel op:
``augstudio evaluate`` honours it by making two AugMix views of every training image and adding
``jsd_weight * JS(p_clean, p_aug1, p_aug2)`` (``jensen_shannon``) to the loss.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import ParamError
from augstudio.core.kernels.warp import matmul, translation, warp

from .base import Op
from .geometry import interp_for
from .params import Param
from .registry import get_op, register

_INTERP = Param("interpolation", "choice", "nearest", choices=("nearest", "bilinear"),
                help="resampling of the geometric sub-ops (torchvision's default for this policy)")
_FILL = Param("fill", "fill", 0, help="value for pixels that come from outside the image")

# the op's magnitude space: name -> (kind, (low, high) or None, signed)
#   kind: "lin" = linspace(low, high, bins); "post8"/"post4" = posterize bits; "none" = no magnitude
_RAND = {
    "Identity": ("none", None, False),
    "ShearX": ("lin", (0.0, 0.3), True),
    "ShearY": ("lin", (0.0, 0.3), True),
    "TranslateX": ("lin_w", (0.0, 150.0 / 331.0), True),
    "TranslateY": ("lin_h", (0.0, 150.0 / 331.0), True),
    "Rotate": ("lin", (0.0, 30.0), True),
    "Brightness": ("lin", (0.0, 0.9), True),
    "Color": ("lin", (0.0, 0.9), True),
    "Contrast": ("lin", (0.0, 0.9), True),
    "Sharpness": ("lin", (0.0, 0.9), True),
    "Posterize": ("post", (8, 4), False),
    "Solarize": ("lin", (255.0, 0.0), False),
    "AutoContrast": ("none", None, False),
    "Equalize": ("none", None, False),
}
_AUTO = {k: v for k, v in _RAND.items() if k != "Identity"} | {"Invert": ("none", None, False)}
_TRIVIAL = {
    "Identity": ("none", None, False),
    "ShearX": ("lin", (0.0, 0.99), True),
    "ShearY": ("lin", (0.0, 0.99), True),
    "TranslateX": ("lin", (0.0, 32.0), True),
    "TranslateY": ("lin", (0.0, 32.0), True),
    "Rotate": ("lin", (0.0, 135.0), True),
    "Brightness": ("lin", (0.0, 0.99), True),
    "Color": ("lin", (0.0, 0.99), True),
    "Contrast": ("lin", (0.0, 0.99), True),
    "Sharpness": ("lin", (0.0, 0.99), True),
    "Posterize": ("post", (8, 6), False),
    "Solarize": ("lin", (255.0, 0.0), False),
    "AutoContrast": ("none", None, False),
    "Equalize": ("none", None, False),
}
_AUGMIX_BASE = {
    "ShearX": ("lin", (0.0, 0.3), True),
    "ShearY": ("lin", (0.0, 0.3), True),
    "TranslateX": ("lin_w", (0.0, 1.0 / 3.0), True),
    "TranslateY": ("lin_h", (0.0, 1.0 / 3.0), True),
    "Rotate": ("lin", (0.0, 30.0), True),
    "Posterize": ("post", (4, 4), False),
    "Solarize": ("lin", (255.0, 0.0), False),
    "AutoContrast": ("none", None, False),
    "Equalize": ("none", None, False),
}
_AUGMIX_ALL = dict(_AUGMIX_BASE) | {
    "Brightness": ("lin", (0.0, 0.9), True),
    "Color": ("lin", (0.0, 0.9), True),
    "Contrast": ("lin", (0.0, 0.9), True),
    "Sharpness": ("lin", (0.0, 0.9), True),
}


_TABLES: dict = {}  # (space, bins, size) -> magnitude_table's answer (read-only tuples)


def magnitude_table(space: dict, num_bins: int, size: tuple[int, int]) -> dict[str, tuple[tuple[float, ...] | None, bool]]:
    """name -> (the magnitude of each bin, or None for ops without one; signed?) for an image ``size``.
    Made once per (space, bins, size): eleven torch calls that cost more than the rest of a policy's draws
    (the spaces are this module's constants, so ``id`` names them)."""
    key = (id(space), num_bins, tuple(size))
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) >= 256:
            _TABLES.clear()
        table = _TABLES[key] = _magnitude_table(space, num_bins, size)
    return table


def _magnitude_table(space: dict, num_bins: int, size: tuple[int, int]) -> dict:
    h, w = size
    out = {}
    for name, (kind, rng, signed) in space.items():
        if kind == "none":
            out[name] = (None, signed)
        elif kind == "post":
            top, span = rng  # e.g. 8 - round(i / ((bins - 1) / 4))
            out[name] = (tuple(float(v) for v in (top - (torch.arange(num_bins, device="cpu") / ((num_bins - 1) / span)).round().int())),
                         signed)
        else:
            lo, hi = rng
            scale = w if kind == "lin_w" else h if kind == "lin_h" else 1.0
            out[name] = (tuple(float(v) for v in torch.linspace(lo, hi * scale if scale != 1.0 else hi, num_bins, device="cpu")), signed)
    return out


def sub_op(name: str, m: float, size: tuple[int, int], interpolation: str, fill) -> tuple[str, dict] | None:
    """The augstudio op and its exact values for one policy op at magnitude ``m`` (None: identity)."""
    h, w = size
    geo = {"interpolation": interpolation, "fill": fill}
    if name == "Identity":
        return None
    if name in ("ShearX", "ShearY"):
        # torchvision's shear by m: about the top-left pixel's corner, the opposite sense of augstudio's
        # angle; i.e. augstudio's centred shear by -atan(m), then a shift (see run_subs)
        deg = -math.degrees(math.atan(m))
        x, y = (deg, 0.0) if name == "ShearX" else (0.0, deg)
        return "shear", {"x": [x, x], "y": [y, y], **geo}
    if name in ("TranslateX", "TranslateY"):
        # a shift by the whole side or more leaves only fill: clamping to one side is exact
        px = int(m)
        fx, fy = (max(-1.0, min(1.0, px / w)), 0.0) if name == "TranslateX" else (0.0, max(-1.0, min(1.0, px / h)))
        return "translate", {"x": [fx, fx], "y": [fy, fy], **geo}
    if name == "Rotate":
        return "rotate", {"degrees": [m, m], **geo}
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        op = {"Brightness": "brightness", "Color": "saturation", "Contrast": "contrast", "Sharpness": "sharpness"}[name]
        f = max(0.0, 1.0 + m)
        return op, {"factor": [f, f]}
    if name == "Posterize":
        b = max(1, min(8, int(m)))
        return "posterize", {"bits": [b, b]}
    if name == "Solarize":
        return "solarize", {"threshold": [float(m), float(m)]}
    return {"AutoContrast": "autocontrast", "Equalize": "equalize", "Invert": "invert"}[name], {}


@lru_cache(maxsize=4096)
def _instance(op: str, key: str):
    return get_op(op)(**json.loads(key))


def sub_instance(op: str, values: dict):
    """The augstudio op a policy sub-op runs as (cached: policies draw the same few values over and over)."""
    return _instance(op, json.dumps(values, sort_keys=True))


def draw_sub(gen, name: str, m: float, signed: bool, size, interpolation, fill) -> dict | None:
    """Flip the sign (one draw when signed), then sample the augstudio op's parameters."""
    if signed and seeding.randint(gen, 0, 1):
        m = -m
    spec = sub_op(name, m, size, interpolation, fill)
    if spec is None:
        return {"policy_op": name, "magnitude": m, "op": None}
    op, values = spec
    out = {"policy_op": name, "magnitude": m, "op": op, "values": values,
           "params": sub_instance(op, values).sample(gen, size)}
    if name in ("ShearX", "ShearY"):
        cx, cy = (size[1] - 1) / 2.0, (size[0] - 1) / 2.0
        out["shift"] = [-m * (cy + 0.5), 0.0] if name == "ShearX" else [0.0, -m * (cx + 0.5)]
    return out


def run_subs(x, subs: list[dict], kind: str):
    for s in subs:
        if s is None or s["op"] is None:
            continue
        op = sub_instance(s["op"], s["values"])
        if s.get("shift"):
            # the sub-op's own matrix followed by a shift: one resampling (torchvision's corner shear)
            mat, out = op.affine(s["params"], tuple(x.shape[-2:]))
            mode, fill = op.border()
            x = warp(x, matmul(translation(*s["shift"]), mat), out, interp_for(op.interp() or "nearest", kind),
                     fill, mode)
        else:
            x = op.apply(x, s["params"], kind)
    return x


class PolicyOp(Op):
    family = "policy"
    categorical = "refuse"
    categorical_reason = ("its policy includes colour ops (brightness, solarize, posterize, ...), which would invent "
                          "values that are not categories")

    def apply(self, x, params, kind):
        return run_subs(x, params["ops"], kind)


@register
class RandAugment(PolicyOp):
    name = "rand_augment"
    summary = ("RandAugment (Cubuk et al. 2020): N sub-ops drawn uniformly from 14, all at magnitude M of "
               "num_magnitude_bins (torchvision's space), each signed at random.")
    params = (
        Param("num_ops", "int", 2, low=1, high=10, help="N: sub-ops applied in sequence"),
        Param("magnitude", "int", 9, low=0, high=100, typical=(0, 30), help="M: magnitude bin (0 .. num_magnitude_bins - 1)"),
        Param("num_magnitude_bins", "int", 31, low=2, high=101, help="number of magnitude bins"),
        _INTERP,
        _FILL,
    )

    @classmethod
    def check(cls, values, where=""):
        if values["magnitude"] >= values["num_magnitude_bins"]:
            raise ParamError(f"{where}parameter 'magnitude' ({values['magnitude']}) must be below "
                             f"num_magnitude_bins ({values['num_magnitude_bins']})")

    def sample(self, gen, size):
        table = magnitude_table(_RAND, self.num_magnitude_bins, size)
        names = list(table)
        subs = []
        for _ in range(self.num_ops):
            name = names[seeding.choice(gen, len(names))]
            mags, signed = table[name]
            m = mags[self.magnitude] if mags is not None else 0.0
            subs.append(draw_sub(gen, name, m, signed, size, self.interpolation, self.fill))
        return {"ops": subs}


@register
class TrivialAugment(PolicyOp):
    name = "trivial_augment"
    summary = ("TrivialAugment Wide (Müller & Hutter 2021): one sub-op of 14, at a uniformly random "
               "magnitude bin, randomly signed.")
    params = (
        Param("num_magnitude_bins", "int", 31, low=2, high=101, help="number of magnitude bins"),
        _INTERP,
        _FILL,
    )

    def sample(self, gen, size):
        table = magnitude_table(_TRIVIAL, self.num_magnitude_bins, size)
        names = list(table)
        name = names[seeding.choice(gen, len(names))]
        mags, signed = table[name]
        m = mags[seeding.choice(gen, len(mags))] if mags is not None else 0.0
        return {"ops": [draw_sub(gen, name, m, signed, size, self.interpolation, self.fill)]}


# AutoAugment's learnt policies (Cubuk et al. 2019, appendix): 25 sub-policies of two (op, probability,
# magnitude bin of 10) each; "-" means no magnitude.
_POLICY_TEXT = {
    "imagenet": """
Posterize .4 8, Rotate .6 9 | Solarize .6 5, AutoContrast .6 - | Equalize .8 -, Equalize .6 -
Posterize .6 7, Posterize .6 6 | Equalize .4 -, Solarize .2 4 | Equalize .4 -, Rotate .8 8
Solarize .6 3, Equalize .6 - | Posterize .8 5, Equalize 1 - | Rotate .2 3, Solarize .6 8
Equalize .6 -, Posterize .4 6 | Rotate .8 8, Color .4 0 | Rotate .4 9, Equalize .6 -
Equalize 0 -, Equalize .8 - | Invert .6 -, Equalize 1 - | Color .6 4, Contrast 1 8
Rotate .8 8, Color 1 2 | Color .8 8, Solarize .8 7 | Sharpness .4 7, Invert .6 -
ShearX .6 5, Equalize 1 - | Color .4 0, Equalize .6 - | Equalize .4 -, Solarize .2 4
Solarize .6 5, AutoContrast .6 - | Invert .6 -, Equalize 1 - | Color .6 4, Contrast 1 8
Equalize .8 -, Equalize .6 -
""",
    "cifar10": """
Invert .1 -, Contrast .2 6 | Rotate .7 2, TranslateX .3 9 | Sharpness .8 1, Sharpness .9 3
ShearY .5 8, TranslateY .7 9 | AutoContrast .5 -, Equalize .9 - | ShearY .2 7, Posterize .3 7
Color .4 3, Brightness .6 7 | Sharpness .3 9, Brightness .7 9 | Equalize .6 -, Equalize .5 -
Contrast .6 7, Sharpness .6 5 | Color .7 7, TranslateX .5 8 | Equalize .3 -, AutoContrast .4 -
TranslateY .4 3, Sharpness .2 6 | Brightness .9 6, Color .2 8 | Solarize .5 2, Invert 0 -
Equalize .2 -, AutoContrast .6 - | Equalize .2 -, Equalize .6 - | Color .9 9, Equalize .6 -
AutoContrast .8 -, Solarize .2 8 | Brightness .1 3, Color .7 0 | Solarize .4 5, AutoContrast .9 -
TranslateY .9 9, TranslateY .7 9 | AutoContrast .9 -, Solarize .8 3 | Equalize .8 -, Invert .1 -
TranslateY .7 9, AutoContrast .9 -
""",
    "svhn": """
ShearX .9 4, Invert .2 - | ShearY .9 8, Invert .7 - | Equalize .6 -, Solarize .6 6
Invert .9 -, Equalize .6 - | Equalize .6 -, Rotate .9 3 | ShearX .9 4, AutoContrast .8 -
ShearY .9 8, Invert .4 - | ShearY .9 5, Solarize .2 6 | Invert .9 -, AutoContrast .8 -
Equalize .6 -, Rotate .9 3 | ShearX .9 4, Solarize .3 3 | ShearY .8 8, Invert .7 -
Equalize .9 -, TranslateY .6 6 | Invert .9 -, Equalize .6 - | Contrast .3 3, Rotate .8 4
Invert .8 -, TranslateY 0 2 | ShearY .7 6, Solarize .4 8 | Invert .6 -, Rotate .8 4
ShearY .3 7, TranslateX .9 3 | ShearX .1 6, Invert .6 - | Solarize .7 2, TranslateY .6 7
ShearY .8 4, Invert .8 - | ShearX .7 9, TranslateY .8 3 | ShearY .8 5, AutoContrast .7 -
ShearX .7 2, Invert .1 -
""",
}


def _parse_policy(text: str) -> list[tuple[tuple[str, float, int | None], ...]]:
    out = []
    for sub in text.replace("\n", "|").split("|"):
        if not sub.strip():
            continue
        pair = []
        for part in sub.split(","):
            name, p, m = part.split()
            pair.append((name, float(p), None if m == "-" else int(m)))
        out.append(tuple(pair))
    return out


POLICIES = {name: _parse_policy(text) for name, text in _POLICY_TEXT.items()}


@register
class AutoAugment(PolicyOp):
    name = "auto_augment"
    summary = ("AutoAugment (Cubuk et al. 2019): one of the 25 learnt sub-policies of the ImageNet, CIFAR-10 "
               "or SVHN policy; each of its two ops runs with its own probability and magnitude.")
    params = (
        Param("policy", "choice", "imagenet", choices=tuple(POLICIES), help="which learnt policy"),
        _INTERP,
        _FILL,
    )

    def sample(self, gen, size):
        table = magnitude_table(_AUTO, 10, size)
        pol = POLICIES[self.policy]
        k = seeding.choice(gen, len(pol))
        subs = []
        for name, p, mbin in pol[k]:
            if not seeding.coin(gen, p):
                continue
            mags, signed = table[name]
            m = mags[mbin] if (mags is not None and mbin is not None) else 0.0
            subs.append(draw_sub(gen, name, m, signed, size, self.interpolation, self.fill))
        return {"sub_policy": k, "ops": subs}


def _gamma(gen, a: float) -> float:
    """One Gamma(a, 1) draw from ``gen`` (Marsaglia & Tsang 2000; a < 1 by the boost U^(1/a))."""
    if a < 1:
        u = seeding.uniform(gen, 0.0, 1.0)
        return _gamma(gen, a + 1.0) * max(u, 1e-300) ** (1.0 / a)
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = float(torch.randn((), generator=seeding.torch_generator(gen), dtype=torch.float64, device=gen.device))
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        u = seeding.uniform(gen, 0.0, 1.0)
        if math.log(max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v


def dirichlet(gen, alphas: list[float]) -> list[float]:
    g = [_gamma(gen, a) for a in alphas]
    s = sum(g)
    return [v / s for v in g] if s > 0 else [1.0 / len(g)] * len(g)


@register
class AugMix(PolicyOp):
    name = "augmix"
    targets = "refuse"  # blends copies moved by different geometry: no one mask or box fits the result
    summary = ("AugMix (Hendrycks et al. 2020): `width` chains of 1-3 random sub-ops at up to `severity`, "
               "mixed with Dirichlet weights, then blended with the original by a Beta(alpha, alpha) weight.")
    params = (
        Param("severity", "int", 3, low=1, high=10, help="magnitudes are drawn from the first `severity` of 10 bins"),
        Param("width", "int", 3, low=1, high=10, help="number of augmentation chains mixed"),
        Param("depth", "int", -1, low=-1, high=10, help="sub-ops per chain; -1 draws 1..3 per chain"),
        Param("alpha", "float", 1.0, low=0.01, high=100.0, typical=(0.1, 5.0), help="Dirichlet / Beta concentration"),
        Param("all_ops", "bool", True, help="include brightness, colour, contrast and sharpness"),
        Param("jsd", "bool", False,
              help="Jensen-Shannon consistency: training makes two AugMix views per image and adds the JS loss"),
        Param("jsd_weight", "float", 12.0, low=0.0, high=1000.0, typical=(0.0, 50.0), help="weight of the JS consistency loss"),
        Param("interpolation", "choice", "bilinear", choices=("nearest", "bilinear"),
              help="resampling of the geometric sub-ops"),
        _FILL,
    )

    @classmethod
    def check(cls, values, where=""):
        if values["depth"] == 0:
            raise ParamError(f"{where}parameter 'depth' must be -1 (random 1..3) or 1 .. 10, got 0")

    def sample(self, gen, size):
        m = dirichlet(gen, [self.alpha, self.alpha])
        w = dirichlet(gen, [self.alpha] * self.width)
        table = magnitude_table(_AUGMIX_ALL if self.all_ops else _AUGMIX_BASE, 10, size)
        names = list(table)
        chains = []
        for _ in range(self.width):
            depth = self.depth if self.depth > 0 else seeding.randint(gen, 1, 3)
            chain = []
            for _ in range(depth):
                name = names[seeding.choice(gen, len(names))]
                mags, signed = table[name]
                mag = mags[seeding.choice(gen, self.severity)] if mags is not None else 0.0
                chain.append(draw_sub(gen, name, mag, signed, size, self.interpolation, self.fill))
            chains.append(chain)
        return {"original_weight": round(m[0], 8), "chain_weights": [round(v * m[1], 8) for v in w],
                "chains": chains}

    def apply(self, x, params, kind):
        mix = params["original_weight"] * x.float()
        for wgt, chain in zip(params["chain_weights"], params["chains"]):
            mix += wgt * run_subs(x, chain, kind).float()
        return mix.clamp_(0, 255).to(torch.uint8)


def jensen_shannon(logits_clean, *logits_aug, eps: float = 1e-7):
    """AugMix's consistency loss: mean over the batch of JS(p_clean, p_aug1, ...), the mean KL of each
    distribution to their average M (clamped away from 0, as in the reference code)."""
    probs = [torch.softmax(lg, dim=1) for lg in (logits_clean, *logits_aug)]
    m = torch.clamp(sum(probs) / len(probs), eps, 1.0).log()
    return sum(torch.nn.functional.kl_div(m, p, reduction="batchmean") for p in probs) / len(probs)


__all__ = ["RandAugment", "TrivialAugment", "AutoAugment", "AugMix", "POLICIES", "magnitude_table", "sub_op",
           "jensen_shannon", "dirichlet", "sub_instance"]
