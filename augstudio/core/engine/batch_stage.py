"""The batch stage: the recipe's ``batch:`` list (mixup, cutmix, puzzlemix, label_smoothing, ...) applied
to a batch of images and labels, giving soft labels. The same stage runs in a training loop
(``Recipe.batch_transform``) and in export (pairs drawn from the seed).

Training use::

    mix = recipe.batch_transform(num_classes=10, model=model)   # model: the network being trained
    for images, labels in loader:
        images, soft = mix(images, labels)
        loss = -(soft * model(images).log_softmax(1)).sum(1).mean()

Images: float ``N x C x H x W`` (0..1 or normalised, as the loader gives them) or uint8 (returned as
float 0..1). Labels: class indices ``(N,)`` or soft labels ``(N, K)``. The steps run in order, each with
its probability ``p`` (one coin per batch). Randomness comes from the recipe seed, ``torch.initial_seed()``
and a call counter (as for ``sample_transform``), never from the global RNG. Pass ``key=`` to make a batch's
draws depend on the recipe seed and that key only, e.g. ``mix(images, labels, key=(epoch, step))``: the
same key gives the same mixing in any process, whatever ran before.
"""

from __future__ import annotations

import itertools

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.io.images import as_picture
from augstudio.core.ops.registry import get_batch_op
from augstudio.core.ops.step import stream_keys


def build_batch_ops(batch_steps) -> list[tuple]:
    """``(step, op, stream)`` for each batch step (the stream keys its generator, like per-image steps)."""
    ops = []
    keys = stream_keys(batch_steps)
    for i, step in enumerate(batch_steps):
        cls = get_batch_op(step.op, f"batch step {i + 1} ")
        ops.append((step, cls(**step.values), keys[i]))
    return ops


def to_soft(labels, num_classes: int, device=None):
    """Class indices (N,) or soft labels (N, K) -> float soft labels (N, K)."""
    labels = torch.as_tensor(labels, device=device)
    if labels.dim() == 2:
        if labels.shape[1] != num_classes:
            raise RecipeError(f"batch stage: soft labels have {labels.shape[1]} classes, expected {num_classes}")
        return labels.float()
    if labels.dim() != 1:
        raise RecipeError(f"batch stage: labels must be class indices (N,) or soft labels (N, K), got shape "
                          f"{tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise RecipeError(f"batch stage: class index out of range 0..{num_classes - 1} "
                          f"(got {int(labels.min())}..{int(labels.max())}); check num_classes")
    return torch.nn.functional.one_hot(labels, num_classes).float()


def apply_batch_ops(ops, images, soft, seed, key, model=None, pair=None, details: bool = False):
    """Run the batch ops on one batch with generators derived from (seed, key). Returns images, soft, records.

    ``pair``: force the pairing (export uses [1, 0] on a batch of two). ``details``: each applied record
    also gets ``"details"``, what the op reports beyond the images (PuzzleMix's block mask), per item.
    """
    n = images.shape[0]
    size = tuple(images.shape[-2:])
    records = []
    for step, op, stream in ops:
        if not step.enabled:
            records.append({"op": step.op, "applied": False, "params": None})
            continue
        gen = seeding.generator(seed, key, 0, stream)
        applied = seeding.coin(gen, step.p)
        if not applied:
            records.append({"op": step.op, "applied": False, "params": None})
            continue
        params = op.sample(gen, n, size, soft.shape[1])
        if pair is not None and "perm" in params:
            params["perm"] = list(pair)
        try:
            images, soft, info = op.mix(images, soft, params, model=model)
        except AugstudioError:
            raise
        except Exception as e:
            raise RecipeError(f"batch step {step.op}: failed on a batch of shape {tuple(images.shape)}: "
                              f"{type(e).__name__}: {e}") from e
        rec = {"op": step.op, "applied": True, "params": params}
        if details:
            rec["details"] = info
        records.append(rec)
    return images, soft, records


def batch_key(key) -> str:
    """The seeding key for a batch named by ``key``: a string as it is, an int as its digits, a tuple / list
    of ints and strings joined with ``:`` (so ``("evaluate", 0, 2, 32)`` is ``"evaluate:0:2:32"``)."""
    parts = key if isinstance(key, (tuple, list)) else (key,)
    if not parts or not all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in parts):
        raise RecipeError(f"batch stage: key={key!r} cannot name a batch; use an int, a string or a tuple of "
                          "them, e.g. key=(epoch, step)")
    return ":".join(str(p) for p in parts)


def as_batch(images, device=None) -> torch.Tensor:
    """What training loops hand the batch stage -> float ``N x C x H x W``: a tensor (uint8 becomes 0..1),
    or a list of same-size tensors or PIL images. Channels-last batches are refused with the fix, not mixed
    along the wrong axis."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise RecipeError("batch stage: the batch is empty")
        items = [x if isinstance(x, torch.Tensor) else _pil_tensor(x) for x in images]
        shapes = {tuple(x.shape) for x in items}
        if len(shapes) > 1:
            raise RecipeError(f"batch stage: the images of a batch must share one size, got {sorted(shapes)}; "
                              "crop or resize them first (e.g. random_resized_crop with a fixed size)")
        images = torch.stack(items)
    elif not isinstance(images, torch.Tensor):
        images = torch.as_tensor(images, device=device or "cpu")
    if device is not None:
        images = images.to(device)
    if images.dim() != 4:
        raise RecipeError(f"batch stage: images must be N x C x H x W, got shape {tuple(images.shape)}")
    if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        raise RecipeError(f"batch stage: the images look channels-last (N x H x W x C = {tuple(images.shape)}); "
                          "give N x C x H x W, e.g. images.permute(0, 3, 1, 2)")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images if images.is_floating_point() else images.float()


def _pil_tensor(image) -> torch.Tensor:
    if not hasattr(image, "convert"):
        raise RecipeError(f"batch stage: a batch holds tensors or PIL images, got {type(image).__name__}")
    pic, _ = as_picture(image)
    return pic.pixels


class BatchStage:
    """``(images, labels) -> (images, soft_labels)`` for the recipe's batch steps."""

    def __init__(self, recipe, num_classes: int, model=None, device=None):
        if int(num_classes) < 1:
            raise RecipeError(f"batch stage: num_classes must be >= 1, got {num_classes}")
        self.recipe = recipe
        self.num_classes = int(num_classes)
        self.model = model
        self.device = torch.device(device) if device is not None else None
        self.ops = build_batch_ops(recipe.batch)
        self._counter = itertools.count()
        self.last_records: list[dict] = []

    def __call__(self, images, labels, key=None):
        """Mix one batch. ``key``: None (fresh draws from ``torch.initial_seed()`` and a call counter) or an
        int, a string, or a tuple / list of ints and strings naming the batch (e.g. ``(epoch, step)``):
        the draws then come from the recipe seed and the key only, so the batch is reproducible."""
        key_text = None if key is None else batch_key(key)
        images = as_batch(images, self.device)
        soft = to_soft(labels, self.num_classes, images.device)
        if soft.shape[0] != images.shape[0]:
            raise RecipeError(f"batch stage: {images.shape[0]} images but {soft.shape[0]} labels")
        if key_text is None:
            key_text = f"batch:{torch.initial_seed()}:{next(self._counter)}"
        images, soft, self.last_records = apply_batch_ops(self.ops, images, soft, self.recipe.seed, key_text,
                                                          model=self.model)
        return images, soft


__all__ = ["BatchStage", "apply_batch_ops", "build_batch_ops", "batch_key", "to_soft", "as_batch"]
