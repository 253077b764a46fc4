"""AdaIN arbitrary style transfer (Huang & Belongie, ICCV 2017).

encoder (VGG19 up to relu4_1) -> adaptive instance normalisation -> decoder.

The layer layout matches the widely used pytorch-AdaIN port exactly (``nn.Sequential`` indices), so its
released ``vgg_normalised.pth`` (the full 53-module VGG; only modules 0..30 are used) and ``decoder.pth``
load as they are. Without them, ``adain_train_job`` trains a decoder on the user's own content and style
folders, with an encoder made from torchvision's ImageNet VGG19 (``encoder='imagenet'``), from a file, or
seeded random weights (``encoder='random'``, no download at all); it writes ``decoder.pth`` and the
``vgg_normalised.pth`` it used side by side, in the released layout.

Images are ``N x 3 x H x W`` floats in 0..1 (the port's convention: its first 1x1 convolution does the
input normalisation).
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
from augstudio.core.base.errors import AugstudioError, DatasetError, JobCancelled, ModelError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.io.dataset import is_image_name
from augstudio.core.io.images import atomic_write_bytes

from .common import StyleResult, resize, to_float, to_uint8
from .features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_uninitialised,
    init_random_,
    load_vgg19_features,
)

ENCODER_FILE = "vgg_normalised.pth"
DECODER_FILE = "decoder.pth"
ENCODER_USED = 31  # modules 0..30: up to relu4_1
ENC_SLICES = ((0, 4), (4, 11), (11, 18), (18, 31))  # relu1_1, relu2_1, relu3_1, relu4_1


def make_encoder() -> nn.Sequential:
    """The port's ``vgg`` (53 modules): 1x1 conv, then VGG19 with reflection padding, to relu5_4.
    Uninitialised: load a state dict or call ``init_random_``."""
    return build_uninitialised(_encoder_modules)


def make_decoder() -> nn.Sequential:
    """The port's ``decoder``: mirrors the encoder from relu4_1, nearest upsampling. Uninitialised."""
    return build_uninitialised(_decoder_modules)


def _encoder_modules() -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    cin = 3
    for block, (n, cout) in enumerate(((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))):
        for _ in range(n):
            mods += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]
            cin = cout
        if block < 4:
            mods.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
    return nn.Sequential(*mods)


def _decoder_modules() -> nn.Sequential:
    def conv(cin, cout, relu=True):
        m = [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3))]
        return m + ([nn.ReLU()] if relu else [])

    up = nn.UpsamplingNearest2d(scale_factor=2)
    mods = conv(512, 256) + [up] + conv(256, 256) + conv(256, 256) + conv(256, 256) + conv(256, 128)
    mods += [nn.UpsamplingNearest2d(scale_factor=2)] + conv(128, 128) + conv(128, 64)
    mods += [nn.UpsamplingNearest2d(scale_factor=2)] + conv(64, 64) + conv(64, 3, relu=False)
    return nn.Sequential(*mods)


def set_input_normalisation_(conv: nn.Conv2d) -> None:
    """Make the first 1x1 conv compute (x - mean) / std with ImageNet statistics (RGB in 0..1)."""
    mean, std = torch.tensor(IMAGENET_MEAN, device="cpu"), torch.tensor(IMAGENET_STD, device="cpu")
    with torch.no_grad():
        conv.weight.copy_(torch.diag(1.0 / std).view(3, 3, 1, 1))
        conv.bias.copy_(-mean / std)


def encoder_from_torchvision(weights="imagenet", seed: int = 0) -> nn.Sequential:
    """An encoder in the port's layout from torchvision VGG19 weights ('imagenet', a file) or 'random'."""
    enc = make_encoder()
    if weights == "random":
        init_random_(enc, seeding.generator(seed, stream="adain-random-encoder"))
    else:
        tv = [m for m in load_vgg19_features(weights) if isinstance(m, nn.Conv2d)]
        ours = [m for m in list(enc.children())[1:] if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for a, b in zip(ours, tv):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
    set_input_normalisation_(enc[0])
    return enc


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5):
    """Per-sample, per-channel mean and std over positions (std = sqrt(unbiased var + eps), as the port)."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    std = (flat.var(dim=2) + eps).sqrt().view(n, c, 1, 1)
    mean = flat.mean(dim=2).view(n, c, 1, 1)
    return mean, std


def adain(content_feat: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)."""
    c_mean, c_std = calc_mean_std(content_feat)
    return (content_feat - c_mean) / c_std * style_std + style_mean


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Colour preservation: give ``source`` (3 x H x W, 0..1) the colour mean and covariance of ``target``."""
    def stats(x):
        f = x.reshape(3, -1)
        mean = f.mean(dim=1, keepdim=True)
        fc = f - mean
        cov = fc @ fc.t() / max(1, fc.shape[1] - 1) + 1e-5 * torch.eye(3, device=x.device)
        return f, mean, cov

    def msqrt(m, inv=False):
        vals, vecs = torch.linalg.eigh(m)
        vals = vals.clamp_min(1e-8) ** (-0.5 if inv else 0.5)
        return vecs @ torch.diag(vals) @ vecs.t()

    fs, ms, cs = stats(source)
    _, mt, ct = stats(target)
    out = msqrt(ct) @ msqrt(cs, inv=True) @ (fs - ms) + mt
    return out.reshape(source.shape).clamp(0, 1)


class AdaIN(nn.Module):
    """Encoder (modules 0..30 of the port's vgg) + decoder, with the port's training losses."""

    def __init__(self, encoder: nn.Sequential | None = None, decoder: nn.Sequential | None = None):
        super().__init__()
        encoder = encoder if encoder is not None else make_encoder()
        layers = list(encoder.children())[:ENCODER_USED]
        for i, (a, b) in enumerate(ENC_SLICES):
            setattr(self, f"enc_{i + 1}", nn.Sequential(*layers[a:b]))
        for i in range(4):
            getattr(self, f"enc_{i + 1}").requires_grad_(False)
        self.decoder = decoder if decoder is not None else make_decoder()

    def encode_with_intermediate(self, x):
        out = []
        for i in range(4):
            x = getattr(self, f"enc_{i + 1}")(x)
            out.append(x)
        return out

    def encode(self, x):
        for i in range(4):
            x = getattr(self, f"enc_{i + 1}")(x)
        return x

    def losses(self, content, style):
        """(content loss, style loss) of the port: MSE to the AdaIN target at relu4_1, and the MSE of
        means and stds at relu1_1 .. relu4_1."""
        style_feats = self.encode_with_intermediate(style)
        s_mean, s_std = calc_mean_std(style_feats[-1])
        t = adain(self.encode(content), s_mean, s_std).detach()
        g = self.decoder(t)
        g_feats = self.encode_with_intermediate(g)
        loss_c = F.mse_loss(g_feats[-1], t)
        loss_s = 0.0
        for gf, sf in zip(g_feats, style_feats):
            gm, gs = calc_mean_std(gf)
            sm, ss = calc_mean_std(sf)
            loss_s = loss_s + F.mse_loss(gm, sm) + F.mse_loss(gs, ss)
        return loss_c, loss_s

    def target_features(self, content, styles, alpha: float = 1.0, weights=None, style_stats=None):
        """The decoder's input: alpha * (sum_i w_i AdaIN(f(c), f(s_i))) + (1 - alpha) f(c).

        ``styles``: a list of ``1 x 3 x H x W`` images; or give ``style_stats`` as a list of (mean, std)."""
        fc = self.encode(content)
        if style_stats is None:
            style_stats = [calc_mean_std(self.encode(s)) for s in styles]
        if weights is None:
            weights = [1.0 / len(style_stats)] * len(style_stats)
        total = float(sum(weights))
        t = sum((w / total) * adain(fc, m, s) for w, (m, s) in zip(weights, style_stats))
        return alpha * t + (1 - alpha) * fc

    @torch.no_grad()
    def stylize(self, content, styles, alpha: float = 1.0, weights=None, preserve_color: bool = False,
                style_stats=None):
        """Stylise ``content`` (``1 x 3 x H x W``, 0..1) with one or several style images; returns 0..1."""
        if preserve_color and styles:
            styles = [coral(s[0], content[0]).unsqueeze(0) for s in styles]
        t = self.target_features(content, styles, alpha, weights, style_stats)
        out = self.decoder(t)
        return resize(out, content.shape[-2:]).clamp(0, 1)


# -- files ------------------------------------------------------------------------------------------------

def _load_state(path: Path, what: str, fix: str) -> dict:
    if not path.is_file():
        raise ModelError(f"AdaIN {what} '{path}' does not exist. {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot be read as a PyTorch state dict ({type(e).__name__}: {e}). {fix}") from e
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(state).__name__}. {fix}")
    return state


TRAIN_HINT = ("Train a decoder on your own images with `augstudio style adain-train CONTENT_DIR STYLE_DIR --out "
              "DIR` (no download needed), or use the released files of pytorch-AdaIN (vgg_normalised.pth and "
              "decoder.pth, in one folder).")


def load_adain(decoder_path, encoder_path=None, device=None) -> AdaIN:
    """Load a decoder (released layout) and its encoder (``vgg_normalised.pth`` next to the decoder unless
    named). The encoder file may hold all 53 modules (the released one) or the first 31."""
    decoder_path = Path(decoder_path)
    if decoder_path.is_dir():
        decoder_path = decoder_path / DECODER_FILE
    encoder_path = Path(encoder_path) if encoder_path else decoder_path.parent / ENCODER_FILE
    dec_state = _load_state(decoder_path, "decoder", TRAIN_HINT)
    enc_state = _load_state(encoder_path, "encoder", "The encoder must be the one the decoder was trained with. "
                            + TRAIN_HINT)
    dec = make_decoder()
    try:
        dec.load_state_dict(dec_state)
    except RuntimeError as e:
        raise ModelError(f"{decoder_path}: not an AdaIN decoder in the pytorch-AdaIN layout: "
                         f"{str(e).splitlines()[0]}. {TRAIN_HINT}") from e
    enc = make_encoder()
    needed = {k for k in enc.state_dict() if int(k.split(".")[0]) < ENCODER_USED}
    missing = sorted(needed - set(enc_state), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise ModelError(f"{encoder_path}: not a VGG encoder in the pytorch-AdaIN layout (missing {missing[:3]}...). "
                         + TRAIN_HINT)
    try:
        enc.load_state_dict(enc_state, strict=False)
    except RuntimeError as e:
        raise ModelError(f"{encoder_path}: shapes do not fit the pytorch-AdaIN VGG: {str(e).splitlines()[0]}") from e
    return AdaIN(enc, dec).to(resolve_device(device)).eval()


def _save_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_adain(model: AdaIN, folder) -> tuple[Path, Path]:
    """Write ``decoder.pth`` and ``vgg_normalised.pth`` (modules 0..30) in the released layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    enc = nn.Sequential(*[m for i in range(4) for m in getattr(model, f"enc_{i + 1}").children()])
    _save_state(folder / DECODER_FILE, model.decoder.state_dict())
    _save_state(folder / ENCODER_FILE, enc.state_dict())
    return folder / DECODER_FILE, folder / ENCODER_FILE


# -- training ---------------------------------------------------------------------------------------------

def list_images(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"'{folder}' is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))
    if not files:
        raise DatasetError(f"'{folder}' holds no images (looked for .png, .jpg, ... in all sub-folders)")
    return files


class _Crops:
    """Random square crops of a folder's images, resized so the shorter side is ``size`` * 1.25
    (decoded once, cached); bad files are skipped and reported."""

    def __init__(self, files, size, device):
        self.size, self.device = size, device
        self.cache: dict[int, torch.Tensor] = {}
        self.files, self.problems = list(files), []

    def get(self, i):
        if i not in self.cache:
            try:
                x = to_float(self.files[i])
            except AugstudioError as e:
                self.problems.append(f"{self.files[i]}: {e}")
                self.cache[i] = None
                return None
            short = min(x.shape[-2:])
            s = self.size * 1.25 / short
            self.cache[i] = resize(x, (max(self.size, round(x.shape[-2] * s)), max(self.size, round(x.shape[-1] * s))))
        return self.cache[i]

    def batch(self, gen, n):
        out = []
        for _ in range(50 * n):
            x = self.get(seeding.choice(gen, len(self.files)))
            if x is None:
                continue
            top = seeding.randint(gen, 0, x.shape[-2] - self.size)
            left = seeding.randint(gen, 0, x.shape[-1] - self.size)
            out.append(x[..., top:top + self.size, left:left + self.size])
            if len(out) == n:
                return torch.cat(out).to(self.device)
        raise DatasetError("no readable images: " + "; ".join(self.problems[:3]))


def adain_train_job(content_dir, style_dir, out_dir, encoder="random", iterations: int = 2000,
                    batch_size: int = 4, size: int = 256, lr: float = 1e-4, lr_decay: float = 5e-5,
                    style_weight: float = 10.0, content_weight: float = 1.0, seed: int = 0, device=None,
                    token: CancelToken | None = None, preview_every: int = 50, decoder=None):
    """Train an AdaIN decoder (Adam, the port's losses and learning-rate decay) and write it with its
    encoder into ``out_dir``. ``encoder``: 'random' (seeded, no download), 'imagenet' (torchvision's
    cached VGG19), a torchvision vgg19 state-dict file, or a released ``vgg_normalised.pth``.
    ``decoder``: optional decoder file to continue from. Returns a StyleResult whose meta names the files."""
    token = token or CancelToken()
    dev = resolve_device(device)
    contents = _Crops(list_images(content_dir), size, dev)
    styles = _Crops(list_images(style_dir), size, dev)
    enc_name = str(encoder)
    if encoder in ("random", "imagenet"):
        enc = encoder_from_torchvision(encoder, seed)
    else:
        state = _load_state(Path(encoder), "encoder", "Name a vgg_normalised.pth or a torchvision vgg19 file.")
        enc = make_encoder()
        if "0.weight" in state and tuple(state["0.weight"].shape) == (3, 3, 1, 1):
            enc.load_state_dict(state, strict=False)
        else:
            enc = encoder_from_torchvision(str(encoder))
    dec = make_decoder()
    if decoder is not None:
        dec.load_state_dict(_load_state(Path(decoder), "decoder", TRAIN_HINT))
    else:
        init_random_(dec, seeding.generator(seed, stream="adain-decoder-init"))
    model = AdaIN(enc, dec).to(dev)
    model.decoder.train()
    opt = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    gen = seeding.generator(seed, stream="adain-train-batches")
    losses: list[float] = []
    t0 = time.perf_counter()
    fixed_c = contents.batch(seeding.generator(seed, stream="preview"), 1)
    fixed_s = styles.batch(seeding.generator(seed, stream="preview-style"), 1)
    for it in range(1, iterations + 1):
        if token.cancelled:
            raise JobCancelled(f"adain-train: cancelled after {it - 1} of {iterations} iterations; nothing written")
        for g in opt.param_groups:
            g["lr"] = lr / (1.0 + lr_decay * (it - 1))
        c, s = contents.batch(gen, batch_size), styles.batch(gen, batch_size)
        with torch.enable_grad():
            loss_c, loss_s = model.losses(c, s)
            loss = content_weight * loss_c + style_weight * loss_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise ModelError(f"adain-train: the loss became {lv} at iteration {it}; lower --lr (now {lr})")
        losses.append(lv)
        img = None
        if preview_every and (it % preview_every == 0 or it == iterations):
            model.decoder.eval()
            img = to_uint8(model.stylize(fixed_c, [fixed_s]))
            model.decoder.train()
        yield Progress(it, iterations, f"adain-train: loss {lv:.4g} (content {float(loss_c.detach()):.4g}, "
                       f"style {float(loss_s.detach()):.4g})", {"image": img, "loss": lv, "level": 1, "iteration": it})
    model.eval()
    dec_path, enc_path = save_adain(model, out_dir)
    return StyleResult(to_uint8(model.stylize(fixed_c, [fixed_s])), losses, time.perf_counter() - t0,
                       {"method": "adain-train", "decoder": str(dec_path), "encoder": str(enc_path),
                        "encoder_source": enc_name, "skipped": contents.problems + styles.problems})


def adain_job(model: AdaIN, content, styles, alpha: float = 1.0, weights=None, preserve_color: bool = False,
              max_size: int | None = 512, device=None, token: CancelToken | None = None):
    """One AdaIN stylisation as a (short) job, for the GUI and CLI."""
    token = token or CancelToken()
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    t0 = time.perf_counter()
    c = to_float(content, dev, max_size)
    ss = [to_float(s, dev, max_size) for s in (styles if isinstance(styles, (list, tuple)) else [styles])]
    token.check("adain")
    yield Progress(0, 1, "adain: stylising")
    out = model.stylize(c, ss, alpha, weights, preserve_color)
    img = to_uint8(out)
    yield Progress(1, 1, "adain: done", {"image": img, "loss": None, "level": 1})
    return StyleResult(img, [], time.perf_counter() - t0, {"method": "adain", "alpha": alpha})
