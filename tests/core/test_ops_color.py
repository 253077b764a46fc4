"""Colour ops vs torchvision v2 on real images (same parameters), LUT exactness, alpha, refusals, threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.pipeline import Pipeline
from augstudio.core.ops import get_op
from augstudio.core.ops.step import parse_steps


@pytest.fixture(scope="module")
def img():
    from skimage import data

    return torch.from_numpy(np.ascontiguousarray(data.chelsea()[::3, ::3])).permute(2, 0, 1).contiguous()


def op(name, **kw):
    return get_op(name)(**kw)


CASES = [
    ("brightness", {"factor": 1.37}, lambda x: TF.adjust_brightness(x, 1.37), 0),
    ("brightness", {"factor": 0.61}, lambda x: TF.adjust_brightness(x, 0.61), 0),
    ("contrast", {"factor": 1.4}, lambda x: TF.adjust_contrast(x, 1.4), 1),
    ("contrast", {"factor": 0.5}, lambda x: TF.adjust_contrast(x, 0.5), 1),
    ("saturation", {"factor": 1.6}, lambda x: TF.adjust_saturation(x, 1.6), 1),
    ("saturation", {"factor": 0.2}, lambda x: TF.adjust_saturation(x, 0.2), 1),
    ("hue", {"shift": 0.21}, lambda x: TF.adjust_hue(x, 0.21), 1),  # OpenCV's float HSV on the CPU
    ("gamma", {"gamma": 0.7}, lambda x: TF.adjust_gamma(x, 0.7), 0),
    ("posterize", {"bits": 3}, lambda x: TF.posterize(x, 3), 0),
    ("solarize", {"threshold": 100.0}, lambda x: TF.solarize(x, 100.0), 0),
    # OpenCV's filter and blend on the CPU (kernels.filters): within one level, on a few pixels
    ("sharpness", {"factor": 1.8}, lambda x: TF.adjust_sharpness(x, 1.8), 1),
    ("gaussian_blur", {"sigma": 1.5}, lambda x: TF.gaussian_blur(x, [11, 11], [1.5, 1.5]), 1),  # separable
]


@pytest.mark.parametrize("name,params,ref,tol", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_torchvision_for_the_same_parameters(img, name, params, ref, tol):
    out = op(name).apply(img, params, "rgb")
    d = (out.int() - ref(img).int()).abs()
    assert d.max() <= tol, f"{name}: max diff {int(d.max())}"


def test_pointwise_ops_without_statistics_are_exact_lookup_tables(img):
    assert torch.equal(op("invert").apply(img, {}, "rgb"), TF.invert(img))
    assert torch.equal(op("equalize").apply(img, {}, "rgb"), TF.equalize(img))
    d = op("autocontrast").apply(img, {}, "rgb").int() - TF.autocontrast(img).int()
    assert d.abs().max() <= 1 and (d != 0).float().mean() < 0.01  # float rounding at exact .0 boundaries
    gray = op("grayscale").apply(img, {}, "rgb")
    assert torch.equal(gray, TF.rgb_to_grayscale(img, num_output_channels=3))
    assert op("grayscale", keep_channels=False).apply(img, {}, "rgb").shape[0] == 1


def test_color_jitter_matches_torchvision_in_its_random_order(img):
    o = op("color_jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    fns = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
           "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
    for k in range(4):
        p = o.sample(seeding.generator(0, k), (150, 150))
        ref = img
        for name, v in o.sequence(p):
            ref = fns[name](ref, v)
        d = (o.apply(img, p, "rgb").int() - ref.int()).abs()
        assert d.float().mean() < 0.05 and d.max() <= 2


def test_contrast_formula_uses_the_mean_grey(img):
    # torchvision / the course: out = f x + (1 - f) mean(grey)
    f = 0.3
    grey = (0.2989 * img[0].double() + 0.587 * img[1].double() + 0.114 * img[2].double()).floor()
    expected = (f * img.double() + (1 - f) * grey.mean()).clamp(0, 255).floor()
    out = op("contrast").apply(img, {"factor": f}, "rgb")
    assert (out.double() - expected).abs().max() <= 1


def test_alpha_is_untouched_and_gray_images_work(img):
    alpha = torch.arange(img.shape[1] * img.shape[2], dtype=torch.int64).reshape(1, *img.shape[1:]) % 256
    rgba = torch.cat([img, alpha.to(torch.uint8)])
    for name, params in [("brightness", {"factor": 1.5}), ("color_jitter", op("color_jitter", brightness=0.5,
                         saturation=0.5).sample(seeding.generator(1), (1, 1))), ("invert", {}), ("equalize", {})]:
        out = op(name, **({"brightness": 0.5, "saturation": 0.5} if name == "color_jitter" else {})).apply(rgba, params, "rgba")
        assert torch.equal(out[3], rgba[3]), name
    gray = img[:1].clone()
    assert torch.equal(op("saturation").apply(gray, {"factor": 0.1}, "gray"), gray)
    assert torch.equal(op("contrast").apply(gray, {"factor": 0.5}, "gray"), TF.adjust_contrast(gray, 0.5))


def test_colour_ops_are_refused_on_categorical_images_with_a_reason():
    steps = parse_steps([{"op": "color_jitter", "brightness": 0.2}])
    pipe = Pipeline(steps)
    from augstudio.core.io.images import Picture

    pic = Picture(torch.zeros(1, 8, 8, dtype=torch.uint8), "categorical")
    with pytest.raises(RecipeError, match="categorical.*category labels"):
        pipe.run(pic, 0)


def test_contrast_is_byte_identical_for_any_thread_count():
    from skimage import data

    big = torch.from_numpy(data.astronaut()).permute(2, 0, 1).contiguous()
    o = op("color_jitter", contrast=0.5, saturation=0.5)
    p = {"order": [1, 2, 0, 3], "brightness": None, "contrast": 0.61, "saturation": 1.3, "hue": None}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = o.apply(big, p, "rgb")
        torch.set_num_threads(2)
        b = o.apply(big, p, "rgb")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b)


def test_batch_jitter_equals_per_image(img):
    o = op("color_jitter", brightness=0.3, contrast=0.3, saturation=0.3)
    params = [o.sample(seeding.generator(2, k), (1, 1)) for k in range(4)]
    batch = torch.stack([img, img.flip(-1), img.flip(-2), img])
    out = o.apply_batch(batch, params, "rgb")
    for i in range(4):
        ref = o.apply(batch[i], params[i], "rgb")
        assert (out[i].int() - ref.int()).abs().max() <= 2


def test_histogram_ops_accept_non_contiguous_views(img):
    rgba = torch.cat([img, torch.full((1, *img.shape[1:]), 200, dtype=torch.uint8)])
    view = torch.rot90(rgba, 1, (-2, -1))  # a strided view, as after rot90 / alpha split
    for name in ("equalize", "autocontrast"):
        out = op(name).apply(view, {}, "rgba")
        assert torch.equal(out[:3], op(name).apply(view[:3].contiguous(), {}, "rgb")) and bool((out[3] == 200).all())


def test_own_hue_kernel_equals_torchvision_byte_for_byte(astronaut):
    """kernels.color.adjust_hue makes its constants on the image's device; the bytes of its torch form (what
    an accelerator runs) are torchvision's; its OpenCV form on the CPU is within one grey level of them."""
    from augstudio.core.kernels import cv
    from augstudio.core.kernels.color import adjust_hue

    x = torch.from_numpy(np.asarray(astronaut.resize((96, 80)))).permute(2, 0, 1).contiguous()
    for h in (-0.5, -0.27, -0.01, 0.0, 0.13, 0.5):
        with cv.torch_only():
            assert torch.equal(adjust_hue(x, h), TF.adjust_hue(x, h)), h
        d = (adjust_hue(x, h).int() - TF.adjust_hue(x, h).int()).abs()
        assert d.max() <= 1 and (d > 0).float().mean() < 0.001, h
    batch = torch.stack([x, x.flip(-1)])
    with cv.torch_only():
        assert torch.equal(adjust_hue(batch, 0.2), TF.adjust_hue(batch, 0.2))


def test_color_jitter_takes_torchvision_forms_and_draws_the_same():
    """torchvision's ColorJitter takes b or [min, max] (hue h or [min, max]); one number means the range it
    stands for, so b = 0.3 and [0.7, 1.3] give the same draws; an adjustment at [1, 1] ([0, 0] for hue) is
    left out without a draw, as torchvision's None; bad ranges name the parameter."""
    from augstudio.core.base.errors import ParamError
    from augstudio.core.engine.recipe import load_recipe

    a = op("color_jitter", brightness=0.3, contrast=0.2, hue=0.05)
    b = op("color_jitter", brightness=[0.7, 1.3], contrast=[0.8, 1.2], hue=[-0.05, 0.05])
    assert a.values == b.values
    for k in range(5):
        assert a.sample(seeding.generator(3, k), (8, 8)) == b.sample(seeding.generator(3, k), (8, 8))
    p = op("color_jitter", saturation=[0.5, 0.9]).sample(seeding.generator(0), (8, 8))
    assert p["brightness"] is None and p["hue"] is None and 0.5 <= p["saturation"] <= 0.9
    assert load_recipe({"steps": [{"op": "color_jitter", "hue": 0}]}).to_dict()["steps"][0]["hue"] == [0, 0]
    with pytest.raises(ParamError, match=r"'brightness'.*low must not exceed high"):
        op("color_jitter", brightness=[1.2, 0.8])
    with pytest.raises(ParamError, match=r"'hue'"):
        op("color_jitter", hue=[-0.7, 0.1])
