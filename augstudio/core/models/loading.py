"""Load a classifier, and turn pictures into the float batch it expects.

Three sources, one result (``LoadedModel``: the module in eval mode plus everything needed to feed it)::

    load_model("resnet18")                   # torchvision architecture, its DEFAULT weights
    load_model("resnet18:IMAGENET1K_V1")     # ... a named weights enum member
    load_model("resnet18:none", num_classes=4)   # ... random init (no download)
    load_model("run/best.pt")                # a checkpoint written by save_checkpoint (or a bare state
                                             # dict with ``arch="resnet18"``), read with weights_only=True
    load_model("model.ts", allow_code=True)  # a TorchScript file: runs code, so only when asked

Pretrained torchvision weights come through torchvision's weights API and its cache
(``torch.hub.get_dir()/checkpoints``). Offline with an empty cache, ``ModelError`` names the file to put
there. Checkpoints are read with ``torch.load(weights_only=True)``: a pickle that would run code is refused
before anything runs.

Input conventions (``LoadedModel.input_mode``):

* ``"rgb"``: 3 channels; gray pictures are repeated, RGBA drops alpha, categorical pictures are coloured
  by their palette. Scaled to 0..1 then normalised by ``mean`` / ``std``.
* ``"gray"``: 1 channel (RGB is converted with ITU-R 601 luma weights).
* ``"onehot"``: categorical pictures only (wafer maps): palette index ``k`` becomes channel ``k`` set to
  1 (``num_categories`` channels; indices beyond are clipped to the last one). ``mean``/``std`` are 0/1.

``input_size`` is (height, width); pictures are resized to it (bilinear with antialias, nearest for
one-hot). ``None`` means any size (the probe is global-average-pooled), and pictures keep their size when
they all share one. Torchvision models are fed the whole image resized to the crop size (no centre crop),
so saliency maps line up with the picture.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import io
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import ModelError
from augstudio.core.io.images import KIND_OF_CHANNELS, Picture, atomic_write_bytes
from augstudio.core.models.networks import ProbeNet

from .exported import is_exported, load_exported
from .loaded import IMAGENET_MEAN, IMAGENET_STD, INPUT_MODES, LoadedModel

CHECKPOINT_FORMAT = "augstudio-checkpoint"
PROBE_ARCH = "augstudio.probe"


# -- saving ------------------------------------------------------------------------------------------------
def save_checkpoint(path, module: torch.nn.Module, arch: str, classes=None, input_size=None, *, mean, std,
                    input_mode: str = "rgb", num_categories: int = 0, arch_kwargs: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint that ``load_model(path)`` reads back with ``weights_only=True``.

    ``arch`` is a torchvision architecture name (``"resnet18"``) or ``"augstudio.probe"``; ``arch_kwargs``
    are plain keyword arguments to rebuild it; ``extra`` is plain JSON-like metadata (kept in ``meta``).
    Written atomically.
    """
    if input_mode not in INPUT_MODES:
        raise ModelError(f"save_checkpoint: input_mode must be one of {', '.join(INPUT_MODES)}, got {input_mode!r}")
    state = {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": str(arch),
        "arch_kwargs": dict(arch_kwargs or {}),
        "state_dict": state,
        "classes": [str(c) for c in classes] if classes is not None else None,
        "input_size": [int(input_size[0]), int(input_size[1])] if input_size is not None else None,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "input_mode": input_mode,
        "num_categories": int(num_categories),
        "extra": dict(extra or {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


# -- loading -----------------------------------------------------------------------------------------------
def load_model(spec, num_classes: int | None = None, device=None, allow_code: bool = False,
               arch: str | None = None, progress: bool = False) -> LoadedModel:
    """Load a classifier from a torchvision name, a checkpoint file or (opt-in) a TorchScript file.

    ``spec``: ``"name"`` / ``"name:WEIGHTS"`` / ``"name:none"`` for torchvision, or a file path.
    ``arch``: the architecture of a bare state-dict file. ``allow_code``: permit TorchScript (it runs
    code from the file). Raises ``ModelError`` with the file and the fix.
    """
    dev = resolve_device(device)
    if isinstance(spec, Path) or _looks_like_path(str(spec)):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelError(f"{path}: model file not found (check the path, or give a torchvision "
                             "architecture name such as resnet18)")
        if path.is_dir():
            raise ModelError(f"{path}: is a folder; give the model file inside it (.pt / .pth)")
        if is_exported(path):
            lm = load_exported(path, dev)
        elif _is_torchscript(path):
            lm = _load_torchscript(path, allow_code, dev)
        else:
            lm = _load_checkpoint(path, num_classes, arch, dev, allow_code)
    else:
        lm = _load_torchvision(str(spec), num_classes, dev, progress)
    lm.module.eval()
    return lm


def _looks_like_path(s: str) -> bool:
    return ("/" in s or "\\" in s or s.lower().endswith((".pt", ".pth", ".ckpt", ".bin", ".ts", ".zip", ".jit"))
            or Path(s).expanduser().exists())


def _is_torchscript(path: Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.split("/", 1)[-1].startswith("code/") for n in names) or any(
        n.endswith("/constants.pkl") for n in names)


def _load_torchscript(path: Path, allow_code: bool, dev) -> LoadedModel:
    if not allow_code:
        raise ModelError(f"{path}: is a TorchScript file, and loading one runs the code stored in it. Only if "
                         "you trust its source, allow it (allow_code=True, or --allow-code on the command line)")
    warnings.warn(f"{path}: loading a TorchScript model runs code from the file; do this only for files you trust",
                  UserWarning, stacklevel=3)
    extra = {"augstudio.json": ""}
    try:
        module = torch.jit.load(str(path), map_location=dev, _extra_files=extra)
    except Exception as e:
        raise ModelError(f"{path}: cannot load as TorchScript ({type(e).__name__}: {e})") from None

    meta = {}
    if extra.get("augstudio.json"):
        try:
            meta = json.loads(extra["augstudio.json"])
        except ValueError:
            meta = {}
    if meta.get("input_mode", "rgb") != "onehot" and (not meta.get("mean") or not meta.get("std")):
        raise ModelError(f"{path}: the TorchScript file does not say how its inputs were normalised (no mean and "
                         "std in its augstudio.json), so it would be fed wrongly; save the model with "
                         "augstudio.save_model(model, path, classes=..., mean=..., std=...)")
    size = meta.get("input_size")
    return LoadedModel(module, tuple(size) if size else None, tuple(meta.get("mean") or (0.0,)),
                       tuple(meta.get("std") or (1.0,)), meta.get("classes"), path.name,
                       meta.get("input_mode", "rgb"), int(meta.get("num_categories", 0)), "torchscript", meta)


def _torch_load_safe(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"{path}: refused to load: the file holds Python objects beyond tensors and plain data, and "
            "unpickling them could run arbitrary code (read with weights_only=True). Re-save only the "
            "weights: torch.save({'arch': ..., 'state_dict': model.state_dict()}, path), or use "
            f"augstudio.core.models.loading.save_checkpoint. Detail: {first[:300]}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:300]}); "
                         "is the file complete?") from None


def _state_dict_like(obj) -> bool:
    return isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def _infer_num_classes(state: dict) -> int | None:
    last = None
    for k, v in state.items():
        if k.endswith(".bias") and v.dim() == 1:
            last = v
    return int(last.shape[0]) if last is not None else None


def _load_checkpoint(path: Path, num_classes, arch, dev, allow_code: bool = False) -> LoadedModel:
    obj = _torch_load_safe(path)
    meta: dict = {}
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state = obj["state_dict"]
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
    elif isinstance(obj, dict) and "model" in obj and _state_dict_like(obj["model"]):
        state = obj["model"]
        meta = {k: v for k, v in obj.items() if k != "model"}
    elif _state_dict_like(obj):
        state = obj
    else:
        raise ModelError(f"{path}: no state dict found (expected a dict of tensors, or a dict with "
                         "'state_dict' and 'arch'); save with augstudio.core.models.loading.save_checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel prefixes
    arch_name = arch or meta.get("arch")
    if not arch_name:
        raise ModelError(f"{path}: the checkpoint does not say its architecture; pass it (arch='resnet18', "
                         "or --arch on the command line) or save with save_checkpoint(..., arch=...)")
    classes = meta.get("classes")
    n = num_classes or (len(classes) if classes else None) or _infer_num_classes(state)
    kwargs = dict(meta.get("arch_kwargs") or {})
    input_mode = meta.get("input_mode", "rgb")
    if arch_name == PROBE_ARCH:
        try:
            module = ProbeNet(num_classes=n, **kwargs)
        except TypeError as e:
            raise ModelError(f"{path}: probe checkpoint has bad arch_kwargs {kwargs}: {e}") from None
    elif ":" in arch_name:
        module = build_user_class(arch_name, n, kwargs, allow_code, where=f"{path}: ")
    else:
        module = _build_torchvision(arch_name, n, kwargs, where=f"{path}: ")
    mean, std = meta.get("mean"), meta.get("std")
    if not mean or not std:
        if ":" in arch_name or arch_name == PROBE_ARCH:
            raise ModelError(f"{path}: the checkpoint does not say how its inputs were normalised (no mean and "
                             "std), so it would be fed wrongly; save it with augstudio.save_model(model, path, "
                             "classes=..., mean=..., std=...)")
        warnings.warn(f"{path}: the checkpoint does not say how its inputs were normalised; feeding it "
                      f"ImageNet's mean {IMAGENET_MEAN} and std {IMAGENET_STD}, the torchvision convention for "
                      f"{arch_name}. If it was trained otherwise, results will be wrong: re-save it with "
                      "augstudio.save_model(..., mean=..., std=...)", UserWarning, stacklevel=3)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = str(e).splitlines()
        detail = " ".join(ln.strip() for ln in lines[1:4])[:400]
        raise ModelError(f"{path}: the weights do not fit architecture {arch_name!r} with {n} classes "
                         f"(wrong architecture or class count?). {detail}") from None
    if classes is None and n:
        classes = [str(i) for i in range(n)]
    size = meta.get("input_size")
    lm = LoadedModel(module.to(dev), tuple(size) if size else None, tuple(mean), tuple(std),
                     list(classes) if classes else None, f"{arch_name} ({path.name})", input_mode,
                     int(meta.get("num_categories", 0) or 0), "checkpoint", dict(meta.get("extra") or {}))
    lm.meta["path"] = str(path)
    lm.meta["arch"] = arch_name
    return lm


def _torchvision_names() -> list[str]:
    import torchvision  # deferred: torch

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_arch(name: str, where: str = "") -> None:
    names = _torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See torchvision.models.list_models()."
        raise ModelError(f"{where}unknown architecture {name!r}: not a torchvision classification model.{hint}")


def _build_torchvision(name: str, num_classes, kwargs, where=""):
    import torchvision  # deferred: torch

    _check_arch(name, where)
    kw = dict(kwargs)
    if num_classes:
        kw["num_classes"] = int(num_classes)
    try:
        return torchvision.models.get_model(name, weights=None, **kw)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{where}cannot build {name!r} with {kw}: {e}") from None


def build_user_class(spec: str, num_classes, kwargs: dict, allow_code: bool, where: str = ""):
    """``package.module:Class`` -> an instance (``num_classes=`` when its constructor takes it). Importing it
    runs that module's code, so only with ``allow_code``."""
    if not allow_code:
        raise ModelError(f"{where}architecture {spec!r} is your own class: building it imports and runs "
                         "module code, so allow it (allow_code=True, or --allow-code on the command line)")
    module_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"{where}cannot import {spec!r} ({type(e).__name__}: {e}); the module must be importable "
                         "(installed, or on PYTHONPATH)") from None
    kw = dict(kwargs)
    if num_classes and "num_classes" in inspect.signature(cls).parameters:
        kw.setdefault("num_classes", int(num_classes))
    try:
        return cls(**kw)
    except TypeError as e:
        raise ModelError(f"{where}cannot build {spec} with {kw}: {e}") from None


def weights_cache_file(weights) -> Path:
    """Where torchvision keeps (or would keep) the file of a weights enum member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _load_torchvision(spec: str, num_classes, dev, progress) -> LoadedModel:
    import torchvision  # deferred: torch

    name, _, wname = spec.partition(":")
    name = name.strip()
    wname = wname.strip()
    module_kwargs: dict = {}
    if wname.lower() in ("none", "random", "scratch"):
        module = _build_torchvision(name, num_classes, {})
        n = num_classes or int(getattr(module, "num_classes", 0) or 0) or None
        classes = [str(i) for i in range(n)] if n else None
        lm = LoadedModel(module.to(dev), (224, 224), IMAGENET_MEAN, IMAGENET_STD, classes, f"{name} (random init)",
                         "rgb", 0, "torchvision", {"arch": name})
        return lm
    _check_arch(name)
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise ModelError(f"{name!r} has no pretrained weights in torchvision; use '{name}:none' for random "
                         "init or a checkpoint file") from None
    members = list(enum)
    if not wname or wname.upper() == "DEFAULT":
        weights = enum.DEFAULT
    else:
        try:
            weights = enum[wname.split(".")[-1]]
        except KeyError:
            raise ModelError(f"{name}: unknown weights {wname!r}; choose one of "
                             f"{', '.join(m.name for m in members)} (or DEFAULT, or none)") from None
    cats = list(weights.meta.get("categories") or [])
    if num_classes and cats and int(num_classes) != len(cats):
        raise ModelError(f"{name}:{weights.name} has {len(cats)} classes, not {num_classes}; fine-tune it and "
                         "load your checkpoint file instead, or use random init with "
                         f"'{name}:none'")
    cache = weights_cache_file(weights)
    try:
        state = weights.get_state_dict(progress=progress, check_hash=False)
    except Exception as e:  # URLError, socket errors, HTTP errors, corrupt cache file
        if cache.exists():
            raise ModelError(f"{cache}: the cached weights for {name}:{weights.name} cannot be read "
                             f"({type(e).__name__}: {str(e)[:200]}); delete the file so it is downloaded "
                             "again") from None
        raise ModelError(
            f"{name}:{weights.name}: weights not in the cache and the download failed "
            f"({type(e).__name__}: {str(e)[:200]}). On a connected machine the file is fetched from "
            f"{weights.url}; offline, copy that file as {cache.name} into {cache.parent} (the torch hub "
            "cache; set TORCH_HOME to move it), or use a checkpoint file.") from None
    module = torchvision.models.get_model(name, weights=None, **module_kwargs,
                                          **({"num_classes": len(cats)} if cats else {}))
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{cache}: cached weights do not fit {name} ({str(e).splitlines()[0][:200]}); delete "
                         "the file so it is downloaded again") from None
    tf = weights.transforms()
    crop = getattr(tf, "crop_size", [224])
    crop = list(crop) if isinstance(crop, (list, tuple)) else [int(crop)]
    size = (int(crop[0]), int(crop[-1]))
    mean = tuple(float(m) for m in getattr(tf, "mean", IMAGENET_MEAN))
    std = tuple(float(s) for s in getattr(tf, "std", IMAGENET_STD))
    return LoadedModel(module.to(dev), size, mean, std, cats or None, f"{name}:{weights.name}", "rgb", 0,
                       "torchvision", {"arch": name, "weights": weights.name, "cache_file": str(cache)})


# -- preprocessing -----------------------------------------------------------------------------------------
def picture_channels(pic: Picture, input_mode: str, num_categories: int = 0) -> torch.Tensor:
    """One picture as float ``C x H x W`` in 0..1 (or one-hot) for ``input_mode``, before resizing."""
    x = pic.pixels
    if input_mode == "onehot":
        if pic.kind != "categorical":
            raise ModelError(f"this model takes categorical (palette) images such as wafer maps, got a {pic.kind} "
                             "image; use a model trained on photos")
        idx = x[0].long().clamp(0, max(num_categories - 1, 0))
        return torch.nn.functional.one_hot(idx, num_categories).permute(2, 0, 1).float()
    if pic.kind == "categorical":
        pal = pic.palette or [v for i in range(256) for v in (i, i, i)]
        step = 4 if pic.palette_mode == "RGBA" else 3
        lut = torch.tensor(pal[: 256 * step] + [0] * max(0, 256 * step - len(pal)), dtype=torch.uint8,
                           device=x.device)
        lut = lut.view(256, step)[:, :3]
        x = lut[x[0].long()].permute(2, 0, 1)
    elif x.shape[0] == 4:
        x = x[:3]
    x = x.float() / 255.0
    if input_mode == "rgb":
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x
    if input_mode == "gray":
        if x.shape[0] == 3:
            w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(3, 1, 1)
            return (x * w).sum(0, keepdim=True)
        return x
    raise ModelError(f"unknown input mode {input_mode!r}; expected one of {', '.join(INPUT_MODES)}")


def preprocess(images, loaded: LoadedModel, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Pictures (or a tensor) -> the float batch ``N x C x H x W`` the model expects, on its device.

    ``images``: a Picture, a list of Pictures, a uint8 tensor ``C x H x W`` / ``N x C x H x W`` (kind from
    the channel count), or a float tensor in 0..1 (only resized and normalised). ``size`` overrides
    ``loaded.input_size``; with neither, pictures keep their size (all must match, else they are resized
    to the first one's).
    """
    F = torch.nn.functional

    mode, k = loaded.input_mode, loaded.num_categories
    if isinstance(images, Picture):
        images = [images]
    if isinstance(images, torch.Tensor):
        t = images if images.dim() == 4 else images.unsqueeze(0)
        if t.dtype == torch.uint8:
            kind = KIND_OF_CHANNELS.get(int(t.shape[1]))
            if kind is None:
                raise ModelError(f"preprocess: expected 1, 3 or 4 channels, got {t.shape[1]}")
            items = [picture_channels(Picture(p, kind), mode, k) for p in t]
        else:
            items = list(t.float())
    else:
        items = [picture_channels(p, mode, k) for p in images]
    if not items:
        raise ModelError("preprocess: no images given")
    target = tuple(size) if size is not None else loaded.input_size
    if target is None:
        target = tuple(items[0].shape[-2:])
    out = []
    for x in items:
        if tuple(x.shape[-2:]) != tuple(target):
            if mode == "onehot":
                x = F.interpolate(x[None], size=target, mode="nearest")[0]
            else:
                x = F.interpolate(x[None], size=target, mode="bilinear", align_corners=False, antialias=True)[0]
        out.append(x)
    batch = torch.stack(out)
    if batch.shape[1] != loaded.in_channels and mode != "onehot":
        raise ModelError(f"preprocess: model {loaded.name} takes {loaded.in_channels} channels, got {batch.shape[1]}")
    if mode != "onehot":
        mean = torch.tensor(loaded.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(loaded.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        batch = (batch - mean) / std
    return batch.to(loaded.device, dtype=model_dtype(loaded.module))


def model_dtype(module) -> torch.dtype:
    """The floating dtype a model computes in (float32 for a model without floating parameters)."""
    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


@torch.no_grad()
def predict(images, loaded: LoadedModel, batch_size: int = 64) -> torch.Tensor:
    """Softmax probabilities ``N x classes`` (on CPU) for pictures or a tensor."""
    if isinstance(images, Picture):
        images = [images]
    outs = []
    seq = images if not isinstance(images, torch.Tensor) else (images if images.dim() == 4 else images[None])
    for i in range(0, len(seq), batch_size):
        x = preprocess(seq[i:i + batch_size], loaded)
        outs.append(torch.softmax(loaded.module(x).float(), dim=1).cpu())
    return torch.cat(outs)
