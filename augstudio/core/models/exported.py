"""Bring your own model: ``save_model`` writes any ``nn.Module`` classifier with ``torch.export`` (the
non-deprecated export path of current PyTorch: a graph and its weights, no pickled code) plus what
augstudio needs to feed it — class names, input normalisation, input size — so ``augstudio tta``,
``distill``, ``saliency``, ``mix``, the app and ``load_model`` take the file as it is::

    augstudio.save_model(net, "mycnn.pt2", classes=["cat", "dog"], mean=(0.5,) * 3, std=(0.25,) * 3)
    augstudio tta --model mycnn.pt2 --data held_out/

The normalisation is required: a file that does not say how its inputs were normalised would be fed
wrongly without anyone noticing (a model trained on mean 0.5 / std 0.25 scores near chance on ImageNet's).
The graph is exported in eval mode (batch norm with its running statistics, no dropout) with a dynamic batch
size, and a dynamic height and width when ``input_size`` is None (any size).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from augstudio.core.base.errors import ModelError
from augstudio.core.io.images import atomic_write_bytes

from .loaded import INPUT_MODES, LoadedModel

META_FILE = "augstudio.json"
FORMAT = "augstudio-exported-model"


class ExportedModule(nn.Module):
    """An exported graph as a module. It was captured in eval mode, so ``train()`` / ``eval()`` (which an
    exported graph refuses) only record the flag."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, x):
        return self.graph(x)

    def train(self, mode: bool = True):
        object.__setattr__(self, "training", bool(mode))
        return self


def save_model(module: nn.Module, path, classes, mean, std, input_size=None, input_mode: str = "rgb",
               num_categories: int = 0, name: str | None = None) -> Path:
    """Export ``module`` (a classifier: ``N x C x H x W`` float -> ``N x classes`` logits) to ``path``.

    ``classes``: the class names, in the order of the logits. ``mean`` / ``std``: the per-channel
    normalisation the model was trained with, on pixels in 0..1 (a model that takes 0..1 as it is: mean 0,
    std 1). ``input_size``: (height, width) it takes, or None for any size. ``input_mode``: rgb, gray or
    onehot (categorical maps, ``num_categories`` channels). Written atomically."""
    if mean is None or std is None:
        raise ModelError("save_model needs mean and std: the per-channel normalisation the model was trained "
                         "with (on pixels in 0..1); for a model that takes 0..1 pixels as they are, pass "
                         "mean=(0, 0, 0), std=(1, 1, 1)")
    if input_mode not in INPUT_MODES:
        raise ModelError(f"save_model: input_mode must be one of {', '.join(INPUT_MODES)}, got {input_mode!r}")
    classes = [str(c) for c in classes]
    channels = num_categories if input_mode == "onehot" else len(mean)
    if len(mean) != len(std) or (input_mode != "onehot" and channels not in (1, 3)):
        raise ModelError(f"save_model: mean and std need one value per input channel (1 or 3), got {mean} / {std}")
    h, w = (int(input_size[0]), int(input_size[1])) if input_size is not None else (64, 64)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    example = torch.zeros(2, channels, h, w, device=device)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dims = {0: batch} if input_size is not None else {0: batch, 2: torch.export.Dim("height", min=8, max=1 << 14),
                                                       3: torch.export.Dim("width", min=8, max=1 << 14)}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logits = module(example)
        if logits.dim() != 2 or logits.shape[1] != len(classes):
            raise ModelError(f"save_model: the model gives outputs of shape {tuple(logits.shape)} for a batch of 2, "
                             f"but {len(classes)} class names were given; pass one name per output")
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=(dims,))
        except Exception as e:  # noqa: BLE001 - any export failure is reported with its cause
            raise ModelError(f"save_model: torch.export could not capture the model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}); give input_size if it needs a fixed size") from None
    finally:
        module.train(was_training)
    meta = {"format": FORMAT, "version": 1, "classes": classes, "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "input_size": [h, w] if input_size is not None else None,
            "input_mode": input_mode, "num_categories": int(num_categories), "name": name or Path(path).stem}
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_FILE: json.dumps(meta)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def is_exported(path: Path) -> bool:
    """A file written by ``torch.export.save`` (``save_model``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("serialized_exported_program.json") or "/models/" in n and n.endswith(".json")
               for n in names) or any(n.endswith("archive_format") for n in names)


def load_exported(path: Path, device) -> LoadedModel:
    extra = {META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign archive
        raise ModelError(f"{path}: cannot load as an exported model ({type(e).__name__}: {str(e)[:300]})") from None
    try:
        meta = json.loads(extra[META_FILE]) if extra.get(META_FILE) else {}
    except ValueError:
        meta = {}
    missing = [k for k in ("classes", "mean", "std") if not meta.get(k)]
    if missing:
        raise ModelError(f"{path}: the exported model does not say its {', '.join(missing)}; save it with "
                         "augstudio.save_model(model, path, classes=..., mean=..., std=...)")
    if torch.device(device).type != "cpu":
        program = torch.export.passes.move_to_device_pass(program, torch.device(device))
    module = ExportedModule(program.module())
    size = meta.get("input_size")
    return LoadedModel(module, tuple(size) if size else None, tuple(meta["mean"]), tuple(meta["std"]),
                       list(meta["classes"]), str(meta.get("name") or path.name), meta.get("input_mode", "rgb"),
                       int(meta.get("num_categories", 0)), "exported", meta)


__all__ = ["save_model", "load_exported", "is_exported", "ExportedModule"]
