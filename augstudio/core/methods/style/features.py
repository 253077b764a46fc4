"""Feature extractors for texture synthesis and style transfer.

* ``VGGFeatures``: torchvision's VGG19 (``features`` part). Weights come from torchvision's weights API
  (``weights="imagenet"``: downloaded once into torch's hub cache on a connected machine), from a file the
  user names (a full ``vgg19`` state dict or its ``features`` part), or ``weights="random"`` (seeded
  Kaiming initialisation; for benchmarks and tests, not for good pictures).
* ``RandomMultiScaleFeatures``: the weight-free extractor of Ustyuzhaninov, Brendel, Gatys & Bethge,
  "What does it take to generate natural textures?" (ICLR 2017): one convolutional layer of random filters
  at several scales (sizes 3, 5, 7, 11, 15, 23, 37, 55; 128 filters each) followed by a ReLU. Its Gram
  matrices alone synthesise good textures. Kernels of 11 pixels and more are convolved through the FFT
  (same result as a direct 'valid' convolution, far fewer operations; the price is memory: the kernel
  spectra kept for the backward pass, about 1.6 GB more at 512 x 512).

Every extractor takes ``N x 3 x H x W`` float images in 0..1 and returns ``{layer name: N x C x h x w}``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from augstudio.core.base import seeding
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layer_names() -> dict[str, int]:
    """relu names (relu1_1 .. relu5_4) -> index in torchvision's ``vgg19().features``."""
    names, idx = {}, 0
    for block, n in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, n + 1):
            names[f"relu{block}_{i}"] = idx + 1
            idx += 2
        idx += 1  # pooling
    return names


VGG19_LAYERS = _vgg19_layer_names()
GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
GATYS_CONTENT_LAYER = "relu4_2"


def kaiming_(weight: torch.Tensor, gen: torch.Generator) -> None:
    """He-normal init from an explicit generator (nn.init would use the global RNG)."""
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=gen, device=gen.device) * math.sqrt(2.0 / fan_in))


def imagenet_weights_help() -> tuple[str, str]:
    """(file name, cache folder) of torchvision's VGG19 ImageNet weights."""
    from torchvision.models import VGG19_Weights  # deferred: torchvision

    url = VGG19_Weights.IMAGENET1K_V1.url
    return os.path.basename(url), os.path.join(torch.hub.get_dir(), "checkpoints")


def build_uninitialised(make) -> nn.Module:
    """Build a module without running its initialisers (they would draw from the global RNG and take
    seconds for VGG19): construct on the meta device, then allocate. Every tensor must then be filled,
    by ``init_random_`` or by loading a state dict."""
    with torch.device("meta"):
        module = make()
    return module.to_empty(device="cpu")


def init_random_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Seeded He init of every conv, identity of every norm layer (nn.init would use the global RNG)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            kaiming_(m.weight, gen)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return module


def vgg19_features_module() -> nn.Sequential:
    """``torchvision.models.vgg19().features`` (same modules and indices), uninitialised."""
    from torchvision.models.vgg import cfgs, make_layers  # deferred: torchvision

    return build_uninitialised(lambda: make_layers(cfgs["E"], batch_norm=False))


def load_vgg19_features(weights="imagenet", seed: int = 0) -> nn.Sequential:
    """torchvision's ``vgg19().features`` with the named weights (see module doc)."""
    feats = vgg19_features_module()
    if weights == "random":
        return init_random_(feats, seeding.generator(seed, stream="vgg19-random"))
    if weights == "imagenet":
        from torchvision.models import VGG19_Weights  # deferred: torchvision

        name, cache = imagenet_weights_help()
        try:
            state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=False)
        except Exception as e:  # URLError, OSError, ...: offline
            raise ModelError(
                f"VGG19 ImageNet weights are not available: {type(e).__name__}: {e}. augstudio looks for "
                f"'{name}' in the cache folder '{cache}'. On a connected machine run "
                "`python -c \"import torchvision; torchvision.models.vgg19(weights='IMAGENET1K_V1')\"` and copy "
                f"'{name}' into that folder, or pass the file with --weights PATH, or use the weight-free "
                "random multi-scale features (--features random).") from e
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        feats.load_state_dict(state)
        return feats
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"VGG19 weights file '{path}' does not exist. Name a vgg19 state dict (.pth), use "
                         "'imagenet' (torchvision's cached weights) or the weight-free random features.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot be read as a PyTorch state dict ({type(e).__name__}: {e}). "
                         "Save one with torch.save(model.state_dict(), path).") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(state).__name__}.")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        feats.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{path}: does not fit torchvision's vgg19 layout (keys 'features.0.weight' ... or "
                         f"'0.weight' ...): {str(e).splitlines()[0]}") from e
    return feats


class VGGFeatures(nn.Module):
    """VGG19 activations at named relu layers (``relu1_1`` ... ``relu5_4``). ``pool='avg'`` swaps max pooling
    for average pooling, as Gatys et al. recommend for synthesis."""

    def __init__(self, layers=GATYS_STYLE_LAYERS + (GATYS_CONTENT_LAYER,), weights="imagenet", pool="max",
                 seed: int = 0):
        super().__init__()
        unknown = [n for n in layers if n not in VGG19_LAYERS]
        if unknown:
            raise ModelError(f"unknown VGG19 layer(s) {unknown}; known: {', '.join(VGG19_LAYERS)}")
        self.layers = tuple(layers)
        feats = load_vgg19_features(weights, seed)
        last = max(VGG19_LAYERS[n] for n in self.layers)
        mods = list(feats.children())[: last + 1]
        if pool == "avg":
            mods = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in mods]
        self.body = nn.Sequential(*mods)
        self._at = {VGG19_LAYERS[n]: n for n in self.layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, device="cpu").view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, device="cpu").view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        x = (x - self.mean) / self.std
        out = {}
        for i, m in enumerate(self.body):
            x = m(x)
            if i in self._at:
                out[self._at[i]] = x
        return out


class RandomMultiScaleFeatures(nn.Module):
    """One layer of random filters at several scales, ReLU (Ustyuzhaninov et al., ICLR 2017).

    Layer names are ``scale3`` ... ``scale55``. Filters are zero-mean Gaussian with variance 1/fan_in drawn
    from a seeded generator; convolution is 'valid' (no padding), so scales larger than the image are
    left out for that image. Kernels of ``fft_from`` pixels and more go through the FFT.
    """

    SIZES = (3, 5, 7, 11, 15, 23, 37, 55)

    def __init__(self, sizes=SIZES, filters: int = 128, seed: int = 0, fft_from: int = 11):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.layers = tuple(f"scale{s}" for s in self.sizes)
        self.fft_from = fft_from
        self._spectra: dict = {}  # (h, w, device, dtype) -> {size: kernel spectrum}; one image size kept
        gen = seeding.generator(seed, stream="random-multiscale-features")
        for s in self.sizes:
            w = torch.randn(filters, 3, s, s, generator=gen, device=gen.device) / math.sqrt(3 * s * s)
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            self.register_buffer(f"w{s}", w)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, device="cpu").view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, device="cpu").view(1, 3, 1, 1))

    def forward(self, x):
        x = (x - self.mean) / self.std
        h, w = x.shape[-2:]
        out = {}
        spec = None
        for s, name in zip(self.sizes, self.layers):
            if s > h or s > w:
                continue
            k = getattr(self, f"w{s}")
            if s >= self.fft_from:
                if spec is None:
                    spec = torch.fft.rfft2(x)
                y = fft_conv_valid(spec, k, (h, w), self._kernel_spectrum(s, k, (h, w)))
            else:
                y = F.conv2d(x, k)
            out[name] = F.relu(y)
        return out


    SPECTRUM_CACHE_BYTES = 128 * 2**20

    def _kernel_spectrum(self, s: int, k: torch.Tensor, size):
        """conj(rfft2(kernel, size)), computed once per image size: the filters are fixed, and an
        optimisation evaluates the same size hundreds of times. Only the latest size is kept, and only
        spectra up to ``SPECTRUM_CACHE_BYTES`` each (128 x 3 x 512 x 257 complex is 400 MB): larger ones
        return None and ``fft_conv_valid`` recomputes them in the backward pass instead of keeping them."""
        h, w = int(size[0]), int(size[1])
        if k.requires_grad or k.shape[0] * k.shape[1] * h * (w // 2 + 1) * 8 > self.SPECTRUM_CACHE_BYTES:
            return None
        key = (h, w, k.device, k.dtype)
        if key not in self._spectra:
            self._spectra = {key: {}}
        cache = self._spectra[key]
        if s not in cache:
            with torch.no_grad():
                cache[s] = torch.fft.rfft2(k, s=(h, w)).conj().resolve_conj()
        return cache[s]


def _spectral_correlation(x_spec, k_spec_conj):
    """sum over input channels of x_spec[:, c] * k_spec_conj[:, c] (broadcast products: an einsum here
    becomes a batched matmul per frequency plus permuting copies)."""
    y = x_spec[:, None, 0] * k_spec_conj[None, :, 0]
    for c in range(1, x_spec.shape[1]):
        y = y + x_spec[:, None, c] * k_spec_conj[None, :, c]
    return y


class _RecomputedSpectralCorrelation(torch.autograd.Function):
    """``_spectral_correlation`` with the kernel spectrum made in the forward and made again in the
    backward instead of kept: for fixed kernels at large sizes, one transient spectrum instead of one per
    layer alive until the backward pass (the texture's peak memory at 512 px)."""

    @staticmethod
    def forward(ctx, x_spec, k, h, w):
        ctx.save_for_backward(k)
        ctx.size = (h, w)
        return _spectral_correlation(x_spec, torch.fft.rfft2(k, s=(h, w)).conj())

    @staticmethod
    def backward(ctx, gy):
        (k,) = ctx.saved_tensors
        spec = torch.fft.rfft2(k, s=ctx.size)  # conj of the forward's conjugate spectrum
        gx = torch.stack([(gy * spec[None, :, c]).sum(1) for c in range(k.shape[1])], dim=1)
        return gx, None, None, None


def fft_conv_valid(x_spec: torch.Tensor, k: torch.Tensor, size: tuple[int, int],
                   k_spec_conj: torch.Tensor | None = None) -> torch.Tensor:
    """'valid' cross-correlation (what F.conv2d computes) of an image given by its rfft2 ``x_spec``
    (``N x C x H x W//2+1``) with kernels ``k`` (``O x C x s x s``). ``k_spec_conj``: the conjugate of
    ``rfft2(k, s=size)`` when the caller keeps it (fixed kernels)."""
    h, w = size
    s = k.shape[-1]
    if k_spec_conj is not None:
        y_spec = _spectral_correlation(x_spec, k_spec_conj)
    elif k.requires_grad:
        y_spec = _spectral_correlation(x_spec, torch.fft.rfft2(k, s=(h, w)).conj())
    else:
        y_spec = _RecomputedSpectralCorrelation.apply(x_spec, k, h, w)
    y = torch.fft.irfft2(y_spec, s=(h, w))
    return y[..., : h - s + 1, : w - s + 1]


def make_features(kind="random", weights="imagenet", layers=None, seed: int = 0, device=None, pool="max"):
    """``kind='random'`` -> RandomMultiScaleFeatures; ``kind='vgg19'`` -> VGGFeatures with ``weights``."""
    dev = resolve_device(device)
    if kind == "random":
        return RandomMultiScaleFeatures(seed=seed).to(dev)
    if kind == "vgg19":
        kw = {} if layers is None else {"layers": tuple(layers)}
        return VGGFeatures(weights=weights, pool=pool, seed=seed, **kw).to(dev)
    raise ModelError(f"unknown feature extractor {kind!r}: use 'random' (weight-free) or 'vgg19'")
