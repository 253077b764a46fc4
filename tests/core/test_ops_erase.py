"""Erasing ops: box sizes follow the papers' parameters; categorical fill; random values from a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.ops import get_op


@pytest.fixture(scope="module")
def img():
    from skimage import data

    return torch.from_numpy(np.ascontiguousarray(data.coffee()[::4, ::4])).permute(2, 0, 1).contiguous()  # 100x150


def op(name, **kw):
    return get_op(name)(**kw)


def test_cutout_hole_side_is_a_fraction_of_the_shorter_side(img):
    o = op("cutout", holes=1, side=[0.2, 0.2], fill=[1, 2, 3])
    for k in range(10):
        p = o.sample(seeding.generator(0, k), (100, 150))
        (top, left, h, w), = p["boxes"]
        assert h <= 20 and w <= 20  # side 0.2 x 100, clipped where it crosses the border
        out = o.apply(img, p, "rgb")
        assert out[:, top:top + h, left:left + w].reshape(3, -1).unique(dim=1).tolist() == [[1], [2], [3]] or h * w == 0
        mask = torch.ones(100, 150, dtype=torch.bool)
        mask[top:top + h, left:left + w] = False
        assert torch.equal(out[:, mask], img[:, mask])


def test_random_erasing_box_follows_area_and_aspect_ranges(img):
    o = op("random_erasing", scale=[0.05, 0.2], ratio=[0.5, 2.0], value="random")
    for k in range(20):
        p = o.sample(seeding.generator(1, k), (100, 150))
        (top, left, h, w), = p["boxes"]
        assert top + h <= 100 and left + w <= 150
        assert 0.05 * 15000 * 0.85 <= h * w <= 0.2 * 15000 * 1.15
        assert 0.5 * 0.8 <= h / w <= 2.0 * 1.25
    out = o.apply(img, p, "rgb")
    assert torch.equal(out, o.apply(img, p, "rgb")), "random values come from the recorded seed"
    assert out[:, top:top + h, left:left + w].float().std() > 50  # uniform noise, not a flat fill


def test_hide_and_seek_hides_about_p_of_the_grid(img):
    o = op("hide_and_seek", grid=[8, 8], p_hide=0.3, fill=0)
    fracs = []
    for k in range(10):
        p = o.sample(seeding.generator(2, k), (100, 150))
        out = o.apply(img, p, "rgb")
        hidden = (out == 0).all(0) & ~(img == 0).all(0)
        fracs.append(float(hidden.float().mean()))
        assert sum(b[2] * b[3] for b in p["boxes"]) == int(hidden.sum())
    assert np.mean(fracs) == pytest.approx(0.3, abs=0.06)


def test_grid_mask_erases_about_one_minus_ratio_squared(img):
    o = op("grid_mask", d=[0.3, 0.3], ratio=0.5, fill=0)
    p = o.sample(seeding.generator(3), (100, 150))
    out = o.apply(img, p, "rgb")
    erased = float(((out == 0).all(0) & ~(img == 0).all(0)).float().mean())
    assert erased == pytest.approx(0.25, abs=0.06)


def test_categorical_erase_uses_a_category_and_refuses_random_values(samples_root):
    from PIL import Image

    wafer = torch.from_numpy(np.array(Image.open(sorted((samples_root / "wafers" / "Center").glob("*.png"))[0])))[None]
    o = op("cutout", side=[0.3, 0.3])
    out = o.apply(wafer, o.sample(seeding.generator(0), (64, 64)), "categorical")
    assert set(out.unique().tolist()) <= set(wafer.unique().tolist())
    r = op("random_erasing", value="random")
    with pytest.raises(RecipeError, match="invent categories"):
        r.apply(wafer, r.sample(seeding.generator(0), (64, 64)), "categorical")
