"""Output steps and the training helpers: the README's snippet runs as written (a torchvision ImageFolder
with ``transform=recipe.sample_transform()`` into a DataLoader's default collate), ``to_tensor`` and
``normalize`` end a recipe, and a batch stage is never dropped without a word."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import augstudio
from augstudio.core.base.errors import ParamError, RecipeError

RECIPE = {"seed": 0, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 10},
                               {"op": "random_resized_crop", "size": 32, "scale": [0.5, 1.0]},
                               {"op": "to_tensor"},
                               {"op": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}]}


def test_readme_snippet_image_folder_with_sample_transform_into_a_dataloader(photo_folder):
    recipe = augstudio.load_recipe(RECIPE)
    train = torchvision.datasets.ImageFolder(str(photo_folder), transform=recipe.sample_transform())
    images, labels = next(iter(torch.utils.data.DataLoader(train, batch_size=4, shuffle=False)))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and labels.tolist() == [0, 0, 1, 1]
    assert -2.5 < float(images.min()) < 0 < float(images.max()) < 2.7  # standardised, not 0..255


def test_output_steps_equal_torchvision_on_the_pixels_before_them(astronaut):
    recipe = augstudio.load_recipe(RECIPE)
    pixels = augstudio.load_recipe({**RECIPE, "steps": RECIPE["steps"][:3]}).apply(astronaut, item="a.png")
    x = recipe.apply(astronaut, item="a.png")
    ref = TF.normalize(TF.to_dtype(TF.to_image(pixels), torch.float32, scale=True), RECIPE["steps"][4]["mean"],
                       RECIPE["steps"][4]["std"])
    assert x.dtype == torch.float32 and torch.allclose(x, ref, atol=1e-6)
    batch = torch.from_numpy(np.asarray(astronaut.resize((64, 64)))).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    out, _ = recipe.apply_batch(batch, ["a", "b", "c"])
    assert out.dtype == torch.float32 and out.shape == (3, 3, 32, 32)


def test_output_steps_come_last_and_always_run():
    with pytest.raises(RecipeError, match="comes after the output step 'to_tensor'.*move them to the end"):
        augstudio.load_recipe({"steps": [{"op": "to_tensor"}, {"op": "hflip"}]}).pipeline()
    with pytest.raises(RecipeError, match="output step always runs: give it p: 1"):
        augstudio.load_recipe({"steps": [{"op": "to_tensor", "p": 0.5}]}).pipeline()
    with pytest.raises(RecipeError, match="'std' is required"):
        augstudio.load_recipe({"steps": [{"op": "normalize", "mean": 0.5}]})


def test_export_writes_the_pixels_before_the_output_steps(photo_folder, tmp_path):
    from augstudio.core.base.jobs import run_job
    from augstudio.core.io.images import read_image
    from augstudio.core.workflows.export import export_job

    recipe = augstudio.load_recipe(RECIPE)
    run_job(export_job(photo_folder, recipe, tmp_path / "out"))
    written = read_image(tmp_path / "out" / "cat" / "cat_0__0.png").pixels
    pixels = augstudio.load_recipe({**RECIPE, "steps": RECIPE["steps"][:3]}).apply(
        read_image(photo_folder / "cat" / "cat_0.jpg"), item="cat/cat_0.jpg").pixels
    assert written.dtype == torch.uint8 and torch.equal(written, pixels)


def test_a_batch_stage_is_not_dropped_by_per_sample_helpers(photo_folder):
    recipe = augstudio.load_recipe({"steps": [{"op": "hflip"}], "batch": [{"op": "mixup"}]})
    for make in (lambda: recipe.sample_transform(), lambda: recipe.dataset(photo_folder)):
        with pytest.raises(RecipeError, match="batch stage \\(mixup\\).*batch_transform.*collate_fn"):
            make()
    assert recipe.sample_transform(batch_stage_elsewhere=True)(Image.new("RGB", (8, 8))).size == (8, 8)


def test_sample_transform_output_choices(astronaut):
    r = augstudio.load_recipe({"steps": [{"op": "hflip"}]})
    assert isinstance(r.sample_transform()(astronaut), Image.Image)
    t = r.sample_transform(output="tensor")(astronaut)
    assert t.dtype == torch.uint8 and t.shape == (3, 512, 512)
    with pytest.raises(RecipeError, match="'tensor', 'pil' or None"):
        r.sample_transform(output="numpy")
    with pytest.raises(ParamError):
        augstudio.load_recipe({"steps": [{"op": "normalize", "mean": 0.5, "std": -1}]})
