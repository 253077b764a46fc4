"""What training code uses: a per-sample transform with fresh, reproducible randomness, and the batch stage."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from augstudio.core.base.errors import RecipeError
from augstudio.core.base.keys import item_key
from augstudio.core.io.dataset import require_images, scan
from augstudio.core.io.images import as_picture, from_picture, picture_to_pil, read_image
from augstudio.core.ops.policy import jensen_shannon

from .batch_stage import BatchStage


def _recipe(recipe, what: str):
    """The Recipe a training helper was given (a dict would need parsing: that is ``load_recipe``'s job)."""
    if not (hasattr(recipe, "apply") and hasattr(recipe, "steps") and hasattr(recipe, "seed")):
        raise RecipeError(f"{what} takes a Recipe, got {type(recipe).__name__}; make one with "
                          "augstudio.load_recipe(path_or_dict)")
    return recipe


class SampleTransform:
    """``transform=`` for a torchvision dataset. Picklable, so DataLoader workers (fork or spawn) can use it."""

    def __init__(self, recipe, output: str | None = None):
        if output not in (None, "tensor", "pil"):
            raise RecipeError(f"sample_transform output must be 'tensor', 'pil' or None, got {output!r}")
        self.recipe = _recipe(recipe, "SampleTransform")
        self.output = output
        self._counter = itertools.count()
        self._pipeline = None

    def __getstate__(self):
        return {"recipe": self.recipe, "output": self.output}

    def __setstate__(self, state):
        self.__init__(state["recipe"], state.get("output"))

    def __call__(self, image):
        # torch.initial_seed() differs per DataLoader worker and per epoch, and follows torch.manual_seed
        key = f"train:{torch.initial_seed()}:{next(self._counter)}"
        if self._pipeline is None:
            self._pipeline = self.recipe.pipeline()
        pic, tag = as_picture(image)
        out, _ = self._pipeline.run(pic, self.recipe.seed, key, 0)
        return finished(self._pipeline, out, self.output or ("tensor" if self._pipeline.has_outputs else tag))


def finished(pipeline, pic, output: str):
    """What a training helper returns: the output steps' tensor, uint8 pixels, a PIL image or the Picture."""
    if output == "pil":
        return picture_to_pil(pic)
    if output == "tensor":
        return pipeline.finish(pic.pixels) if pipeline.has_outputs else pic.pixels
    return from_picture(pic, output)


class EpochKeyedDataset(torch.utils.data.Dataset):
    """What the recipe datasets share: a pipeline built on first use in each process (never pickled into
    DataLoader workers) and the epoch that keys draws when no copy is fixed (``set_epoch``)."""

    _pipeline = None

    def pipeline(self):
        if self._pipeline is None:
            self._pipeline = self.recipe.pipeline()
        return self._pipeline

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pipeline"] = None  # rebuilt in each worker
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class RecipeDataset(EpochKeyedDataset):
    """Samples keyed by their items, so a ``DataLoader`` with any number of workers (fork or spawn) gives
    exactly the pixels that the app's preview and ``augstudio export`` give for the same recipe, seed, item
    and copy, and fresh ones every epoch.

    ``source``: a dataset folder (ImageFolder layout or flat: items keyed by their path relative to it), a
    torchvision ``ImageFolder`` / ``DatasetFolder`` (its ``samples`` and ``root``; images are decoded as
    export decodes them, its own transform is not used), or any dataset with ``item_key(i)`` whose items are
    ``(image, label)``. ``copy=k`` gives export's copy k every time; without it the copy is the epoch
    (``set_epoch(e)``, as a ``DistributedSampler``), so each epoch draws anew. ``output``: ``"tensor"``
    (uint8 ``C x H x W``; after ``to_tensor`` steps, what they make) or ``"pil"``. Items are ``(image, label)``.
    """

    def __init__(self, recipe, source, copy: int | None = None, epoch: int = 0, output: str = "tensor"):
        if output not in ("tensor", "pil"):
            raise RecipeError(f"dataset output must be 'tensor' or 'pil', got {output!r}")
        self.recipe = _recipe(recipe, "RecipeDataset")
        self.copy = None if copy is None else int(copy)
        self.epoch = int(epoch)
        self.output = output
        self.base = None
        self.root = None
        self.samples: list[tuple[str, int]] = []  # (key, label) for folders
        if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
            ds = require_images(scan(source, check_files=False))
            self.root = ds.root
            self.samples = [(it.path, it.label) for it in ds.items]
            self.classes = list(ds.classes)
        elif hasattr(source, "samples") and hasattr(source, "root"):  # torchvision DatasetFolder
            self.root = Path(source.root)
            self.samples = [(item_key(path, self.root), int(label)) for path, label in source.samples]
            self.classes = list(getattr(source, "classes", []))
        elif hasattr(source, "item_key") and hasattr(source, "__getitem__"):
            self.base = source
            self.classes = list(getattr(source, "classes", []))
        else:
            raise RecipeError("dataset source must be a folder, a torchvision ImageFolder / DatasetFolder, or a "
                              f"dataset with item_key(i); got {type(source).__name__}")
        self._pipeline = None

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else len(self.samples)

    def key(self, i: int):
        return item_key(self.base.item_key(i)) if self.base is not None else self.samples[i][0]

    def __getitem__(self, i: int):
        self.pipeline()
        if self.base is not None:
            image, label = self.base[i]
            pic, _ = as_picture(image)
        else:
            key, label = self.samples[i]
            pic = read_image(self.root / key)
        copy = self.epoch if self.copy is None else self.copy
        out, _ = self._pipeline.run(pic, self.recipe.seed, self.key(i), copy)
        return finished(self._pipeline, out, self.output), label


class MixCollate:
    """``collate_fn=`` for a DataLoader: default-collate the samples, then run the recipe's batch stage in the
    worker that made the batch, returning ``(images, soft_labels)``. For model-free mixing (mixup, cutmix,
    PuzzleMix with its image-gradient saliency, label smoothing): a model lives in the training process.
    Randomness comes from the recipe seed, ``torch.initial_seed()`` (per worker and epoch) and a counter."""

    def __init__(self, recipe, num_classes: int):
        self.recipe = _recipe(recipe, "collate_fn")
        for s in recipe.batch:
            if s.enabled and s.values.get("model"):
                raise RecipeError(f"collate_fn: batch step {s.op} names a model ({s.values['model']}); "
                                  "DataLoader workers mix without one: use recipe.batch_transform(num_classes, "
                                  "model=...) in the training loop instead")
        self.num_classes = int(num_classes)
        self._stage = None

    def __getstate__(self):
        return {"recipe": self.recipe, "num_classes": self.num_classes}

    def __setstate__(self, state):
        self.__init__(state["recipe"], state["num_classes"])

    def __call__(self, samples):
        images, labels = torch.utils.data.default_collate(samples)[:2]
        if self._stage is None:
            self._stage = BatchStage(self.recipe, self.num_classes)
        return self._stage(images, labels)


class BatchTransform:
    """The recipe's batch stage for a training loop (mixup, cutmix, puzzlemix, label smoothing); see
    ``core.batch_stage``. ``key=`` (e.g. ``(epoch, step)``) makes a batch's draws reproducible."""

    def __init__(self, recipe, num_classes: int, model=None, device=None):
        self.stage = BatchStage(recipe, num_classes, model=model, device=device)

    def __call__(self, images, labels, key=None):
        return self.stage(images, labels, key=key)


# -- AugMix's Jensen-Shannon consistency -------------------------------------------------------------------
JSD_COPY_OFFSET = 1_000_003  # copy index of the second augmented view (distinct from every epoch's copy)


class JSDViews:
    """``transform=`` for a dataset: ``image -> (clean, aug1, aug2)`` for AugMix's Jensen-Shannon consistency
    loss (Hendrycks et al., 2020). ``aug1`` and ``aug2`` are two independent results of the recipe;
    ``clean`` is the recipe with its ``augmix`` steps left out (the same draws as ``aug1`` for the other
    steps), so a recipe that resizes and ends with ``to_tensor`` / ``normalize`` gives three tensors of one
    shape that the default collate batches; a recipe of ``augmix`` alone gives the image itself as ``clean``.
    ``post`` (optional, e.g.
    ``torchvision.transforms.functional.to_tensor``) is applied to each of the three. Picklable for
    DataLoader workers when ``post`` is.

    Called as a transform, randomness comes from the recipe seed, ``torch.initial_seed()`` and a call
    counter (as ``Recipe.sample_transform``); ``views(image, item, copy)`` keys it explicitly instead
    (``item``: the image's path or index, ``copy``: e.g. the epoch), as ``augstudio evaluate`` does.

    Example::

        views = recipe.jsd_views(post=to_float_tensor)
        data = torchvision.datasets.ImageFolder(root, transform=views)
        for (clean, aug1, aug2), labels in DataLoader(data, batch_size=64, shuffle=True):
            logits = model(torch.cat([clean, aug1, aug2]))
            lc, l1, l2 = logits.split(len(labels))
            loss = F.cross_entropy(lc, labels) + jsd_loss(lc, l1, l2, weight=views.weight)
    """

    def __init__(self, recipe, post=None):
        self.recipe = _recipe(recipe, "JSDViews")
        self.post = post
        self.clean = self.recipe.copy()
        for step in self.clean.steps:  # other steps keep their draws: each step has its own stream
            if step.op == "augmix":
                step.enabled = False
        self._counter = itertools.count()

    def __getstate__(self):
        return {"recipe": self.recipe, "post": self.post}

    def __setstate__(self, state):
        self.__init__(state["recipe"], state["post"])

    @property
    def weight(self) -> float:
        """The recipe's ``jsd_weight`` (of its first enabled ``augmix`` step with ``jsd: true``), else 12."""
        for s in self.recipe.steps:
            if s.enabled and s.op == "augmix" and s.values.get("jsd"):
                return float(s.values.get("jsd_weight", 12.0))
        return 12.0

    def views(self, image, item=0, copy: int = 0, categorical: bool = False):
        """``(clean, aug1, aug2)`` for one image: the recipe at copies ``copy`` and ``copy + JSD_COPY_OFFSET``."""
        clean = self.clean.apply(image, item=item, copy=copy, categorical=categorical)
        aug1 = self.recipe.apply(image, item=item, copy=copy, categorical=categorical)
        aug2 = self.recipe.apply(image, item=item, copy=copy + JSD_COPY_OFFSET, categorical=categorical)
        out = (clean, aug1, aug2)
        return tuple(self.post(v) for v in out) if self.post is not None else out

    def __call__(self, image):
        return self.views(image, item=f"jsd:{torch.initial_seed()}:{next(self._counter)}", copy=0)


def jsd_loss(logits_clean, logits_aug1, logits_aug2, weight: float = 12.0, eps: float = 1e-7):
    """AugMix's consistency term: ``weight`` times the Jensen-Shannon divergence of the three predictions,
    ``JS = (KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)) / 3`` with ``M = (p_c + p_1 + p_2) / 3`` clamped to
    ``[eps, 1]`` before the log (as the reference code), averaged over the batch. Add it to the loss on the
    clean images; see ``JSDViews``."""
    return float(weight) * jensen_shannon(logits_clean, logits_aug1, logits_aug2, eps=eps)
