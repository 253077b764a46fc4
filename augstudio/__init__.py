"""augstudio: see and ship image data augmentation.

The public, Qt-free API for training code::

    import augstudio
    recipe = augstudio.load_recipe("recipe.yaml")
    dataset = torchvision.datasets.ImageFolder(root, transform=recipe.sample_transform())
    out = recipe.apply(pil_image, item="cat/001.jpg", copy=0)   # deterministic
"""

from __future__ import annotations

from augstudio.core.base.errors import (
    AugstudioError,
    DatasetError,
    ImageError,
    JobCancelled,
    ModelError,
    OutputError,
    ParamError,
    RecipeError,
)
from augstudio.core.engine.recipe import Recipe, Step, load_recipe  # noqa: E402

from .core.base.version import __version__  # noqa: E402


def __getattr__(name):  # heavy, torch-using pieces load on first use
    if name == "SoftLabelFolder":
        from augstudio.core.io.softlabels import SoftLabelFolder  # deferred: torch

        return SoftLabelFolder
    if name == "save_model":
        from augstudio.core.models.exported import save_model  # deferred: torch

        return save_model
    if name == "load_model":
        from augstudio.core.models.loading import load_model  # deferred: torch

        return load_model
    raise AttributeError(f"module 'augstudio' has no attribute {name!r}")


__all__ = ["load_recipe", "Recipe", "Step", "AugstudioError", "ImageError", "DatasetError", "RecipeError",
           "ParamError", "JobCancelled", "ModelError", "OutputError", "SoftLabelFolder", "save_model", "load_model",
           "__version__"]
