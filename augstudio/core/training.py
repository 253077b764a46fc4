"""What training code uses: a per-sample transform with fresh, reproducible randomness, and the batch stage."""

from __future__ import annotations

import itertools

import torch


class SampleTransform:
    """``transform=`` for a torchvision dataset. Picklable, so DataLoader workers (fork or spawn) can use it."""

    def __init__(self, recipe_dict: dict):
        self.recipe_dict = recipe_dict
        self._recipe = None
        self._counter = itertools.count()

    def __getstate__(self):
        return {"recipe_dict": self.recipe_dict}

    def __setstate__(self, state):
        self.__init__(state["recipe_dict"])

    @property
    def recipe(self):
        if self._recipe is None:
            from .recipe import Recipe

            self._recipe = Recipe.from_dict(self.recipe_dict)
        return self._recipe

    def __call__(self, image):
        # torch.initial_seed() differs per DataLoader worker and per epoch, and follows torch.manual_seed
        key = f"train:{torch.initial_seed()}:{next(self._counter)}"
        return self.recipe.apply(image, item=key, copy=0)


class BatchTransform:
    """Placeholder replaced by the batch stage module (mixup, cutmix, puzzlemix, label smoothing)."""

    def __init__(self, recipe, num_classes: int, model=None, device=None):
        from .batch_stage import BatchStage

        self.stage = BatchStage(recipe, num_classes, model=model, device=device)

    def __call__(self, images, labels):
        return self.stage(images, labels)
