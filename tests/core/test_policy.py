"""Policy ops against torchvision: the same op lists and magnitude ranges, the same pixels per sub-op;
seeded and replayable; AugMix's mixing weights and consistency loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import autoaugment as tva

from augstudio.core.base.errors import RecipeError
from augstudio.core.base.seeding import generator
from augstudio.core.engine.recipe import Recipe
from augstudio.core.ops import get_op
from augstudio.core.ops import policy as P

SIZE = (120, 160)


@pytest.fixture(scope="module")
def cat():
    from skimage import data

    return torch.from_numpy(data.chelsea()[:120, :160].copy()).permute(2, 0, 1).contiguous()


def _same_space(ours: dict, theirs: dict):
    assert list(ours) == list(theirs)  # same ops, same order (the order decides which index draws which op)
    for name, (mags, signed) in theirs.items():
        om, osigned = ours[name]
        assert osigned == signed, name
        if mags.ndim == 0:
            assert om is None, name
        else:
            np.testing.assert_allclose(om, mags.double().numpy(), rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("bins", [31, 11])
def test_rand_augment_space_matches_torchvision(bins):
    _same_space(P.magnitude_table(P._RAND, bins, SIZE), tva.RandAugment()._augmentation_space(bins, SIZE))


def test_trivial_augment_space_matches_torchvision():
    _same_space(P.magnitude_table(P._TRIVIAL, 31, SIZE), tva.TrivialAugmentWide()._augmentation_space(31))


@pytest.mark.parametrize("all_ops", [True, False])
def test_augmix_space_matches_torchvision(all_ops):
    ours = P.magnitude_table(P._AUGMIX_ALL if all_ops else P._AUGMIX_BASE, 10, SIZE)
    _same_space(ours, tva.AugMix(all_ops=all_ops)._augmentation_space(10, SIZE))


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_auto_augment_policies_match_torchvision(policy):
    tv = tva.AutoAugment(tva.AutoAugmentPolicy(policy))
    assert P.POLICIES[policy] == [tuple(sub) for sub in tv.policies]
    ours = P.magnitude_table(P._AUTO, 10, SIZE)
    theirs = tv._augmentation_space(10, SIZE)
    assert set(ours) == set(theirs)
    _same_space({k: ours[k] for k in theirs}, theirs)


CASES = [("Rotate", 17.0), ("Rotate", -30.0), ("TranslateX", 37.6), ("TranslateY", -20.2), ("ShearX", 0.2),
         ("ShearX", -0.99), ("ShearY", -0.3), ("Brightness", 0.5), ("Brightness", -0.7), ("Color", 0.6),
         ("Color", -0.9), ("Contrast", 0.4), ("Contrast", -0.8), ("Sharpness", 0.9), ("Sharpness", -0.5),
         ("Posterize", 5.0), ("Posterize", 4.0), ("Solarize", 100.0), ("Solarize", 255.0), ("AutoContrast", 0.0),
         ("Equalize", 0.0), ("Invert", 0.0)]


@pytest.mark.parametrize("name,m", CASES)
def test_each_sub_op_gives_torchvision_pixels(cat, name, m):
    ref = tva._apply_op(cat, name, m, interpolation=InterpolationMode.NEAREST, fill=[0.0, 0.0, 0.0])
    sub = P.draw_sub(generator(0), name, m, False, SIZE, "nearest", 0)
    ours = P.run_subs(cat, [sub], "rgb")
    diff = (ours.int() - ref.int()).abs()
    assert int(diff.max()) <= (1 if name == "Sharpness" else 255)
    # nearest-neighbour ties may round the other way on a few pixels of a shear
    assert float((diff > 1).float().mean()) <= (0.05 if name.startswith("Shear") else 0.0)


@pytest.mark.parametrize("op", ["rand_augment", "trivial_augment", "auto_augment", "augmix"])
def test_policies_are_seeded_replayable_and_plain_data(cat, op):
    r = Recipe.from_dict({"seed": 4, "steps": [{"op": op}]})
    a, rec = r.apply(cat, item="x.png", copy=1, return_params=True)
    b = r.apply(cat, item="x.png", copy=1)
    assert torch.equal(a, b)
    params = json.loads(json.dumps(rec[0]["params"]))  # plain JSON data
    inst = get_op(op)(**r.steps[0].values)
    assert torch.equal(inst.apply(cat, params, "rgb"), a)
    outs = {r.apply(cat, item="x.png", copy=c).numpy().tobytes() for c in range(6)}
    assert len(outs) >= 4  # copies differ


def test_rand_augment_draws_n_ops_at_magnitude_m():
    op = get_op("rand_augment")(num_ops=3, magnitude=30)
    names = set()
    for s in range(60):
        params = op.sample(generator(s), SIZE)
        assert len(params["ops"]) == 3
        for sub in params["ops"]:
            names.add(sub["policy_op"])
            if sub["policy_op"] == "Rotate":
                assert abs(sub["magnitude"]) == pytest.approx(30.0)
            if sub["policy_op"] == "Solarize":
                assert sub["magnitude"] == 0.0  # the last bin of linspace(255, 0)
    assert names == set(P._RAND)
    with pytest.raises(RecipeError, match="magnitude"):
        get_op("rand_augment")(magnitude=31, num_magnitude_bins=31)


def test_auto_augment_uses_every_sub_policy_and_its_probabilities():
    op = get_op("auto_augment")(policy="svhn")
    seen = set()
    n_invert = n_shear_first = 0
    for s in range(400):
        p = op.sample(generator(s), SIZE)
        seen.add(p["sub_policy"])
        if p["sub_policy"] == 0:  # (ShearX .9 4, Invert .2 -)
            n_shear_first += 1
            n_invert += any(o["policy_op"] == "Invert" for o in p["ops"])
    assert seen == set(range(25))
    assert n_shear_first > 5 and n_invert < n_shear_first


def test_policies_refuse_wafer_maps(wafer_folder):
    from augstudio.core.io.images import read_image

    pic = read_image(next((wafer_folder / "Center").iterdir()))
    r = Recipe.from_dict({"steps": [{"op": "trivial_augment"}]})
    with pytest.raises(RecipeError, match="trivial_augment.*categorical"):
        r.apply(pic, item=0)


def test_gamma_and_dirichlet_draws_have_the_right_moments():
    g = generator(11, "gamma")
    for a in (0.5, 3.0):
        x = np.array([P._gamma(g, a) for _ in range(4000)])
        assert abs(x.mean() - a) < 5 * math.sqrt(a / 4000)  # Gamma(a, 1): mean a, variance a
    d = np.array([P.dirichlet(g, [0.5, 0.5, 0.5]) for _ in range(3000)])
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(d.mean(0), [1 / 3] * 3, atol=0.03)
    # Dirichlet(a, a, a) marginal variance: (1/3)(2/3) / (3a + 1)
    np.testing.assert_allclose(d.var(0), [(2 / 9) / 2.5] * 3, rtol=0.15)


def test_augmix_output_is_the_weighted_mix_of_its_chains(cat):
    op = get_op("augmix")(width=2, depth=2, severity=5, alpha=0.7)
    params = op.sample(generator(3), SIZE)
    assert params["original_weight"] + sum(params["chain_weights"]) == pytest.approx(1.0, abs=1e-6)
    assert [len(c) for c in params["chains"]] == [2, 2]
    mix = params["original_weight"] * cat.double()
    for w, chain in zip(params["chain_weights"], params["chains"]):
        mix += w * P.run_subs(cat, chain, "rgb").double()
    out = op.apply(cat, params, "rgb")
    assert (out.int() - mix.floor().int()).abs().max() <= 1


def test_jensen_shannon_matches_scipy():
    from scipy.spatial.distance import jensenshannon

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ours = float(P.jensen_shannon(a, b))
    pa, pb = torch.softmax(a, 1).numpy(), torch.softmax(b, 1).numpy()
    ref = np.mean([jensenshannon(pa[i], pb[i]) ** 2 for i in range(5)])
    assert ours == pytest.approx(ref, rel=1e-5)
    assert float(P.jensen_shannon(a, a, a)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name,m", [("TranslateX", 32.0), ("TranslateY", -27.0), ("TranslateX", 9.0)])
def test_trivial_augment_translations_on_small_images(name, m):
    # TrivialAugment shifts by up to 32 pixels whatever the size: on a 16 x 16 image that is off the image
    x = (torch.arange(16 * 16 * 3) % 251).to(torch.uint8).reshape(3, 16, 16)
    ref = tva._apply_op(x, name, m, interpolation=InterpolationMode.NEAREST, fill=[0.0, 0.0, 0.0])
    ours = P.run_subs(x, [P.draw_sub(generator(0), name, m, False, (16, 16), "nearest", 0)], "rgb")
    assert torch.equal(ours, ref)
    op = get_op("trivial_augment")()
    for s in range(200):  # every draw on a small image is valid
        op.apply(x, op.sample(generator(s), (16, 16)), "rgb")
