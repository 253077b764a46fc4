"""The probe classifier: a small CNN trained on the user's own dataset, so saliency (and PuzzleMix) have
a model that means something on those images even when the user has none.

* ``ProbeNet``: conv-BN-ReLU stages with max-pooling, then global max pooling (or average, ``pool="avg"``)
  and one linear layer, so it runs at any input size. Global max pooling sends the class score's gradient
  only through the strongest evidence, which keeps saliency maps on the object. Weights are initialised from an explicit ``torch.Generator`` (the module
  is built on the meta device first, so construction never draws from the global RNG).
* ``train_probe_job(data, size=32, epochs=None, seed=0, ...)``: a job (yields ``Progress``, honours a
  ``CancelToken``) that loads the dataset at ``size x size``, holds out a stratified validation split,
  trains with augmentation drawn from a seeded generator (random flips, quarter turns and shifts; for RGB
  also random channel order, sign and gain, so the probe relies on shape and texture rather than hue),
  keeps the weights with the best validation accuracy and saves them with ``models.save_checkpoint``
  under ``settings_dir()/probes/``. Unreadable images are skipped and listed. The same data, settings and
  seed give the same weights; a later call with the same fingerprint reuses the file instead of training.
* ``load_or_train_probe(...)``: the same, run to the end, returning ``(LoadedModel, ProbeResult)``.

Categorical images (wafer maps) are fed as one-hot channels, one per palette index
(``input_mode="onehot"``); anything else as RGB normalised by the training set's channel mean and std.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from augstudio.core.base import seeding
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import DatasetError, ImageError, ModelError
from augstudio.core.base.jobs import CancelToken, Progress, run_job
from augstudio.core.base.settings import settings_dir
from augstudio.core.io.dataset import Dataset, require_images, scan
from augstudio.core.io.images import read_image
from augstudio.core.models.loading import (
    PROBE_ARCH,
    LoadedModel,
    load_model,
    picture_channels,
    save_checkpoint,
)
from augstudio.core.models.networks import ProbeNet

PROBE_VERSION = 1


@dataclass
class ProbeResult:
    path: Path
    val_accuracy: float
    classes: list[str]
    train_accuracy: float = 0.0
    epochs: int = 0
    n_train: int = 0
    n_val: int = 0
    input_mode: str = "rgb"
    reused: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def line(self) -> str:
        how = "reused" if self.reused else f"trained {self.epochs} epochs on {self.n_train} images"
        return (f"probe {how}: validation accuracy {self.val_accuracy:.1%} on {self.n_val} images "
                f"({len(self.classes)} classes) -> {self.path}")


def probes_dir() -> Path:
    return settings_dir() / "probes"


def _as_dataset(data):
    ds = data if isinstance(data, Dataset) else scan(data)
    require_images(ds)
    if ds.layout != "imagefolder" or len(ds.classes) < 2:
        raise DatasetError(f"{ds.root}: the probe classifier needs labelled images: an ImageFolder layout with "
                           f"at least two class sub-folders (found {len(ds.classes)} class(es))")
    return ds


# Measured on the bundled shapes (tests/core/test_saliency.py): a colour-blind, max-pooled probe at 32 px
# localises the object; ``epochs=None`` means about 7200 training samples, between 10 and 150 epochs.
TRAIN_DEFAULTS = {"size": 32, "epochs": None, "seed": 0, "width": 16, "batch_size": 16, "lr": 3e-3,
                  "val_fraction": 0.2, "color_aug": 0.3, "net": None}


def _settings(**kw) -> dict:
    unknown = set(kw) - set(TRAIN_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown probe setting(s): {', '.join(sorted(unknown))}")
    return {**TRAIN_DEFAULTS, **kw}


def fingerprint(ds, settings: dict) -> str:
    """Stable key of (dataset files, training settings): same key -> the saved probe is reused."""
    h = hashlib.blake2b(digest_size=10)
    h.update(json.dumps([PROBE_VERSION, str(Path(ds.root).resolve()), sorted(settings.items())],
                        default=str).encode())
    for it in ds.items:
        try:
            st = os.stat(ds.abspath(it))
            h.update(f"{it.path}\x1f{it.label}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{it.path}\x1fmissing\n".encode())
    return h.hexdigest()


def probe_path(data, **settings) -> Path:
    """Where the probe for ``data`` and these training settings is (or would be) saved."""
    ds = _as_dataset(data)
    return probes_dir() / f"probe-{fingerprint(ds, _settings(**settings))}.pt"


def find_probe(data, **settings) -> Path | None:
    """The saved probe for this dataset and training settings, or None when it must be trained."""
    try:
        p = probe_path(data, **settings)
    except DatasetError:
        return None
    return p if p.is_file() else None


def _split(labels: list[int], val_fraction: float, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """Stratified split: each class with >= 2 images gives round(n * val_fraction) (at least 1) to val."""
    train, val = [], []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        order = torch.randperm(len(idx), generator=gen, device=gen.device).tolist()
        idx = [idx[i] for i in order]
        k = 0 if len(idx) < 2 or val_fraction <= 0 else max(1, round(len(idx) * val_fraction))
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


def _augment(x: torch.Tensor, gen: torch.Generator, color: float = 0.0) -> torch.Tensor:
    """Random flips, quarter turns (square inputs) and shifts up to 1/8 of the side, per sample; with
    ``color`` > 0 (normalised RGB only) also random channel order, channel sign and gain 1 +- ``color``
    (colour-blind features: the probe must use shape and texture, not hue)."""
    n, c, h, w = x.shape
    flips = torch.rand(n, generator=gen, device=gen.device) < 0.5
    turns = torch.randint(0, 4, (n,), generator=gen, device=gen.device)
    pad = max(1, min(h, w) // 8)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device)
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    out = torch.empty_like(x)
    for i in range(n):
        xi = xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        if flips[i]:
            xi = xi.flip(-1)
        if h == w and turns[i]:
            xi = torch.rot90(xi, int(turns[i]), dims=(-2, -1))
        out[i] = xi
    if color > 0:
        perm = torch.argsort(torch.rand(n, c, generator=gen, device=gen.device), dim=1)
        sign = torch.where(torch.rand(n, c, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
        gain = 1.0 + color * (2 * torch.rand(n, c, generator=gen, device=gen.device) - 1)
        out = torch.gather(out, 1, perm.view(n, c, 1, 1).expand(-1, -1, h, w)) * (sign * gain).view(n, c, 1, 1)
    return out


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dev, batch: int = 128) -> float:
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i:i + batch].to(dev)).argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / len(y)


def train_probe_job(data, device=None, cancel: CancelToken | None = None, reuse: bool = True,
                    out: str | Path | None = None, **settings) -> Generator[Progress, None, ProbeResult]:
    """Train (or reuse) the probe for ``data`` (a folder or a scanned Dataset). See the module docstring.

    ``settings`` (defaults in ``TRAIN_DEFAULTS``): ``size`` (side the images are resized to), ``epochs``,
    ``seed``, ``width`` (channels of the first stage), ``batch_size``, ``lr``, ``val_fraction``,
    ``color_aug`` (0 = off; else random channel order / sign / gain), ``net`` (extra ProbeNet arguments).
    ``out``: save here instead of the settings folder; ``reuse``: load a matching saved probe.
    """
    st = _settings(**settings)
    size, epochs, seed, width = st["size"], st["epochs"], st["seed"], st["width"]
    batch_size, lr, val_fraction, color_aug, net = (st["batch_size"], st["lr"], st["val_fraction"],
                                                    st["color_aug"], st["net"])

    cancel = cancel or CancelToken()
    dev = resolve_device(device)
    ds = _as_dataset(data)
    size = int(size)
    if size < 8:
        raise ModelError(f"probe: size must be at least 8 pixels, got {size}")
    if epochs is not None and epochs < 1:
        raise ModelError(f"probe: epochs must be at least 1, got {epochs}")
    fp = fingerprint(ds, st)
    path = Path(out) if out is not None else probes_dir() / f"probe-{fp}.pt"
    if reuse and path.is_file():
        try:
            lm = load_model(path, device="cpu")
            extra = lm.meta
            if extra.get("fingerprint") == fp:
                yield Progress(1, 1, "reusing the saved probe")
                return ProbeResult(path, float(extra.get("val_accuracy", float("nan"))), list(lm.classes or []),
                                   float(extra.get("train_accuracy", float("nan"))), int(extra.get("epochs", 0)),
                                   int(extra.get("n_train", 0)), int(extra.get("n_val", 0)), lm.input_mode,
                                   reused=True)
        except ModelError:
            pass  # unreadable or stale: train again and overwrite

    # -- load ------------------------------------------------------------------------------------------
    total_load = len(ds.items)
    pics, labels, skipped = [], [], []
    for i, it in enumerate(ds.items):
        if i % 16 == 0:
            cancel.check(f"loading images ({i} of {total_load})")
            yield Progress(i, total_load, f"loading {it.path}")
        try:
            pics.append(read_image(ds.abspath(it)))
            labels.append(it.label)
        except ImageError as e:
            skipped.append((it.path, e.cause))
    if len(set(labels)) < 2:
        raise DatasetError(f"{ds.root}: fewer than two classes have readable images; cannot train the probe")
    categorical = all(p.kind == "categorical" for p in pics)
    if categorical:
        mode = "onehot"
        k = max(2, int(max(int(p.pixels.max()) for p in pics)) + 1)
    else:
        mode, k = "rgb", 0
    xs = []
    for p in pics:
        x = picture_channels(p, mode, k)
        if tuple(x.shape[-2:]) != (size, size):
            if mode == "onehot":
                x = F.interpolate(x[None], size=(size, size), mode="nearest")[0]
            else:
                x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        xs.append(x)
    del pics
    x_all = torch.stack(xs)
    y_all = torch.tensor(labels, dtype=torch.long, device="cpu")
    g_split = seeding.generator(seed, "probe-split")
    tr, va = _split(labels, val_fraction, g_split)
    if mode == "rgb":
        mean = x_all[tr].mean(dim=(0, 2, 3))
        std = x_all[tr].std(dim=(0, 2, 3)).clamp_min(1e-3)
        x_all = (x_all - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        mean_t, std_t = tuple(mean.tolist()), tuple(std.tolist())
    else:
        mean_t, std_t = (0.0,) * k, (1.0,) * k
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    if epochs is None:
        epochs = min(150, max(10, 7200 // max(1, len(tr))))

    # -- train -----------------------------------------------------------------------------------------
    in_ch = 3 if mode == "rgb" else k
    net_kw = {"in_channels": in_ch, "width": width, "depth": 3, "pool": "max", "stem_stride": 1, **(net or {})}
    model = ProbeNet(len(ds.classes), seed=seed, **net_kw).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = max(1, -(-len(tr) // batch_size))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.2)
    g_train = seeding.generator(seed, "probe-train")
    best_state, best_val, best_train = None, -1.0, 0.0
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(tr), generator=g_train, device=g_train.device)
        run_loss = 0.0
        for b in range(steps_per_epoch):
            cancel.check(f"training the probe, epoch {epoch + 1} of {epochs}")
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = _augment(x_tr[idx], g_train, color_aug if mode == "rgb" else 0.0).to(dev)
            yb = y_tr[idx].to(dev)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach())
            step += 1
        val = _accuracy(model, x_va, y_va, dev)
        score = val if val == val else -float(run_loss)  # no validation split: keep the last epoch
        if score >= best_val or best_state is None:
            best_val = score
            best_state = {k2: v.detach().cpu().clone() for k2, v in model.state_dict().items()}
            best_train = _accuracy(model, x_tr, y_tr, dev)
        yield Progress(step, total, f"epoch {epoch + 1}/{epochs}: loss {run_loss / steps_per_epoch:.3f}, "
                                    f"validation accuracy {val:.1%}")
    model.load_state_dict(best_state)
    model.eval()
    val_acc = _accuracy(model, x_va, y_va, dev)
    extra = {"fingerprint": fp, "val_accuracy": val_acc, "train_accuracy": best_train, "epochs": epochs,
             "n_train": len(tr), "n_val": len(va), "dataset": str(Path(ds.root).resolve()), "seed": seed,
             "size": size}
    try:
        save_checkpoint(path, model, PROBE_ARCH, ds.classes, (size, size), mean=mean_t, std=std_t, input_mode=mode,
                        num_categories=k, arch_kwargs=net_kw, extra=extra)
    except OSError as e:
        raise ModelError(f"{path}: cannot save the probe ({e.strerror or e}); set AUGSTUDIO_SETTINGS_DIR to a "
                         "writable folder") from None
    return ProbeResult(path, val_acc, list(ds.classes), best_train, epochs, len(tr), len(va), mode, False, skipped)


def load_or_train_probe(data, device=None, cancel: CancelToken | None = None, on_progress=None,
                        **settings) -> tuple[LoadedModel, ProbeResult]:
    """Reuse the saved probe for ``data`` or train it now; returns the loaded model and its result."""
    res = run_job(train_probe_job(data, device=device, cancel=cancel, **settings), on_progress)
    return load_model(res.path, device=device), res
