"""'Copy as code': the few lines of Python that use the chain being edited in training code, written
against the public API (``augstudio.load_recipe``, ``Recipe.sample_transform``, ``Recipe.apply``,
``Recipe.batch_transform``). Plain Python, no Qt."""

from __future__ import annotations

import pprint


def recipe_code(recipe, path=None, dataset_root=None, imagefolder: bool = False, item: str | None = None,
                num_classes: int | None = None) -> str:
    """Code that loads ``recipe``: from ``path`` when the file holds it (saved, no unsaved edits), else
    from the recipe's own data inlined. ``dataset_root`` (an ImageFolder when ``imagefolder``) and
    ``item`` (the shown image's key) make the example lines concrete."""
    lines = ["import augstudio", "import torchvision", ""]
    if path is not None:
        lines.append(f"recipe = augstudio.load_recipe({str(path)!r})")
    else:
        data = pprint.pformat(recipe.to_dict(), indent=1, width=100, sort_dicts=False)
        lines.append("recipe = augstudio.load_recipe(" + data.replace("\n", "\n" + " " * 30) + ")")
    root = str(dataset_root) if (dataset_root is not None and imagefolder) else "data/train"
    batch = [s.op for s in recipe.batch if s.enabled]
    elsewhere = ", batch_stage_elsewhere=True" if batch else ""  # the batch stage runs in the loop (below)
    lines += ["", "# training: fresh, reproducible draws on every call (per DataLoader worker and epoch)",
              f"train = torchvision.datasets.ImageFolder({root!r},",
              f"                                        transform=recipe.sample_transform(output=\"tensor\"{elsewhere}))"]
    if batch:
        k = num_classes or 10
        lines += [f"# the batch stage ({', '.join(batch)}): in the training loop, images, soft = mix(images, labels)",
                  f"mix = recipe.batch_transform(num_classes={k})"]
    key = item or "cat/001.jpg"
    lines += ["# the exact pixels the preview shows for this image and copy:",
              f"# out = recipe.apply(pil_image, item={key!r}, copy=0)"]
    return "\n".join(lines) + "\n"
