"""The batched path: per-item params from the same seed path, equal to the per-image result within
interpolation tolerance, one batch for mixed applied / skipped steps, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.recipe import Recipe

RECIPE = {"seed": 11, "steps": [
    {"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 20, "p": 0.7},
    {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "p": 0.8},
    {"op": "random_resized_crop", "size": 48, "scale": [0.3, 1.0]},
    {"op": "gaussian_noise", "std": 0.08, "p": 0.5}, {"op": "cutout", "p": 0.5}]}


@pytest.fixture(scope="module")
def batch():
    from skimage import data

    imgs = [data.astronaut(), data.coffee()[:, 100:500], data.chelsea()[:, 50:350]]
    ts = []
    for a in imgs:
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
        ts.append(torch.nn.functional.interpolate(t, size=(96, 96), mode="area").round().to(torch.uint8)[0])
    return torch.stack(ts * 2)  # 6 items


def test_batch_equals_per_image_for_the_same_item_and_copy(batch):
    r = Recipe.from_dict(RECIPE)
    items = [f"img_{i}.png" for i in range(len(batch))]
    out, records = r.apply_batch(batch, items, copies=[0, 0, 0, 1, 1, 1])
    assert out.shape == (6, 3, 48, 48) and out.dtype == torch.uint8
    applied = set()
    for i in range(len(batch)):
        ref, rec = r.apply(batch[i], item=items[i], copy=[0, 0, 0, 1, 1, 1][i], return_params=True)
        assert rec == records[i]
        applied |= {s["op"] for s in rec if s["applied"]}
        d = (out[i].int() - ref.int()).abs()
        assert d.float().mean() < 0.3 and d.max() <= 8, (i, d.float().mean(), d.max())
    assert len(applied) == 6


def test_batch_on_categorical_maps_keeps_categories(samples_root):
    from PIL import Image

    paths = sorted((samples_root / "wafers" / "Edge-Ring").glob("*.png"))[:4]
    x = torch.stack([torch.from_numpy(np.array(Image.open(p)))[None] for p in paths])
    r = Recipe.from_dict({"steps": [{"op": "rot90"}, {"op": "rotate", "degrees": 180}, {"op": "salt_pepper"}]})
    out, _ = r.apply_batch(x, list(range(4)), kind="categorical")
    for i in range(4):
        assert set(out[i].unique().tolist()) <= set(x[i].unique().tolist())
        ref = r.apply(x[i], item=i, categorical=True)
        assert torch.equal(out[i], ref)


def test_batch_errors_say_what_to_do(batch):
    r = Recipe.from_dict({"steps": [{"op": "center_crop", "size": 32, "p": 0.5}]})
    with pytest.raises(RecipeError, match="same output size"):
        r.apply_batch(batch, list(range(6)))
    with pytest.raises(RecipeError, match="one key per image"):
        Recipe.from_dict(RECIPE).apply_batch(batch, [0, 1])
    with pytest.raises(RecipeError, match="categorical"):
        Recipe.from_dict({"steps": [{"op": "invert"}]}).apply_batch(batch[:, :1], range(6), kind="categorical")
