"""Noise ops: the statistics their formulas promise, seeds as plain data, batches, wafer maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.pipeline import Pipeline
from augstudio.core.io.images import Picture
from augstudio.core.kernels import noise as N
from augstudio.core.ops import get_op
from augstudio.core.ops.step import parse_steps


@pytest.fixture(scope="module")
def gravel():
    from skimage import data

    g = torch.from_numpy(np.ascontiguousarray(data.gravel()[::4, ::4]))
    return g[None].repeat(3, 1, 1).contiguous()


def op(name, **kw):
    return get_op(name)(**kw)


def test_standard_normal_table_has_unit_moments_and_follows_the_seed():
    n = N.standard_normal([3], (200_000,), "cpu")[0]
    assert abs(float(n.mean())) < 0.01 and abs(float(n.std()) - 1.0) < 0.01
    assert float((n.abs() > 1.96).float().mean()) == pytest.approx(0.05, abs=0.004)
    assert torch.equal(n, N.standard_normal([3], (200_000,), "cpu")[0])
    other = N.standard_normal([4], (200_000,), "cpu")[0]
    assert abs(float(torch.corrcoef(torch.stack([n, other]))[0, 1])) < 0.01, "another seed, independent noise"


def _lowbias32(v: int) -> int:
    v ^= v >> 16
    v = (v * 0x7FEB352D) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x846CA68B) & 0xFFFFFFFF
    return v ^ (v >> 16)


def test_noise_bits_are_integer_arithmetic_any_device_repeats():
    """The draws are a pure function of (seed, index) computed with wrapping 32-bit integer operations: a
    plain-Python reference (no torch kernel) gives the same bits, so CUDA and MPS, whose integer products
    wrap the same way, give the same noise as the CPU."""
    seed = 123456789012345
    got = N.bits32([seed], 50, "cpu")[0].tolist()
    mixed = N._splitmix64(seed)
    k0, k1 = mixed & 0xFFFFFFFF, mixed >> 32
    want = [_lowbias32(_lowbias32(i ^ k0) ^ k1) for i in range(50)]
    assert [v & 0xFFFFFFFF for v in got] == want
    rows = N.bits32([seed, 7], 50, "cpu")
    assert rows[0].tolist() == got, "a row of a batch equals the draw alone"


def test_gaussian_noise_std_is_in_units_of_the_unit_range():
    flat = torch.full((3, 128, 128), 128, dtype=torch.uint8)
    o = op("gaussian_noise", std=[0.05, 0.05])
    p = o.sample(seeding.generator(0), (128, 128))
    assert json.loads(json.dumps(p)) == p and isinstance(p["seed"], int)
    out = o.apply(flat, p, "rgb")
    d = out.float() - 128
    assert float(d.std()) == pytest.approx(0.05 * 255, rel=0.03)
    assert torch.equal(out, o.apply(flat, p, "rgb")), "the recorded seed replays the same noise"
    same = op("gaussian_noise", std=[0.05, 0.05], per_channel=False).apply(flat, p, "rgb")
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])


def test_poisson_noise_variance_equals_the_mean_in_photon_units():
    flat = torch.full((1, 200, 200), 100, dtype=torch.uint8)
    peak = 50.0
    out = op("poisson_noise").apply(flat, {"seed": 5, "peak": peak}, "gray")
    photons = out.double() * peak / 255.0
    lam = 100 * peak / 255.0
    assert float(photons.mean()) == pytest.approx(lam, rel=0.03)
    assert float(photons.var()) == pytest.approx(lam, rel=0.1)


def test_speckle_noise_grows_with_intensity():
    img = torch.cat([torch.full((1, 64, 64), 50, dtype=torch.uint8), torch.full((1, 64, 64), 200, dtype=torch.uint8)], -1)
    out = op("speckle_noise").apply(img, {"seed": 1, "std": 0.1}, "gray").float()
    s_dark, s_bright = float(out[..., :64].std()), float(out[..., 64:].std())
    assert s_dark == pytest.approx(5.0, rel=0.1) and s_bright == pytest.approx(20.0, rel=0.1)


def test_salt_and_pepper_hits_the_requested_fraction(gravel):
    out = op("salt_pepper", salt=0.25).apply(gravel, {"seed": 9, "amount": 0.2}, "rgb")
    changed = (out != gravel).any(0)
    salt = (out == 255).all(0) & changed
    pepper = (out == 0).all(0) & changed
    assert float((salt | pepper).float().mean()) == pytest.approx(0.2, abs=0.02)
    assert float(salt.float().sum() / (salt | pepper).float().sum()) == pytest.approx(0.25, abs=0.04)


def test_salt_and_pepper_flips_dies_on_wafer_maps(samples_root):
    path = sorted((samples_root / "wafers" / "Scratch").glob("*.png"))[0]
    wafer = torch.from_numpy(np.array(Image.open(path)))[None]
    out = op("salt_pepper").apply(wafer, {"seed": 2, "amount": 0.3}, "categorical")
    assert set(torch.unique(out).tolist()) <= set(torch.unique(wafer).tolist())
    assert torch.equal(out[wafer == 0], wafer[wafer == 0]), "off-wafer pixels are never touched"
    flipped = (out != wafer)
    assert 0.2 < float(flipped.sum()) / float((wafer != 0).sum()) < 0.4
    assert set(out[flipped].tolist()) <= {1, 2} and bool((out[flipped] != wafer[flipped]).all())


def test_gaussian_noise_is_refused_on_wafer_maps_with_the_alternative():
    pipe = Pipeline(parse_steps([{"op": "gaussian_noise", "std": 0.1}]))
    with pytest.raises(RecipeError, match="salt_pepper"):
        pipe.run(Picture(torch.ones(1, 8, 8, dtype=torch.uint8), "categorical"), 0)


@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "poisson_noise", "salt_pepper"])
def test_batch_equals_per_image(gravel, name):
    o = op(name)
    params = [o.sample(seeding.generator(4, k), (64, 64)) for k in range(3)]
    batch = torch.stack([gravel, gravel.flip(-1), gravel])
    out = o.apply_batch(batch, params, "rgb")
    for i in range(3):
        assert torch.equal(out[i], o.apply(batch[i], params[i], "rgb"))


def test_fast_noise_paths_equal_their_definitions():
    """The int16 path gives exactly round(scale * N(0, 1)) of the same draws, one scale per batch row."""
    ref = N.standard_normal([11, 12], (3, 37, 41), "cpu")
    for scale in (0.0, 7.3, 25.5, 255.0):
        s = N.scaled_normal_int16([11, 12], (3, 37, 41), "cpu", [scale, 2 * scale])
        assert s.dtype == torch.int16
        assert torch.equal(s[0], (ref[0] * scale).round().to(torch.int16))
        assert torch.equal(s[1], (ref[1] * (2 * scale)).round().to(torch.int16))


def test_poisson_draws_follow_the_distribution_at_every_rate():
    """Exact inverse-CDF draws below POISSON_EXACT, the normal approximation above: mean and variance of
    Poisson(lam) at low, middle and high rates (photon units)."""
    for peak, level in ((2.0, 255), (60.0, 128), (900.0, 255), (5e4, 200)):
        x = torch.full((1, 1, 300, 300), level, dtype=torch.uint8)
        k = N.poisson_of_levels(x, [9], [peak]).double()
        lam = level / 255.0 * peak
        assert float(k.mean()) == pytest.approx(lam, rel=0.02, abs=0.02), (peak, level)
        assert float(k.var()) == pytest.approx(lam, rel=0.06), (peak, level)


def test_numpy_and_torch_forms_draw_the_same_bits():
    """On the CPU the counter hash runs compiled (unsigned lanes); the torch form (what CUDA and MPS run,
    here run on the CPU through ``cv.torch_only()``) gives the same bits and so the same noise."""
    from augstudio.core.kernels import cv

    seeds, shape = [5, 2**61 + 3], (3, 29, 31)
    n = 3 * 29 * 31
    fast = [N.bits32(seeds, n, "cpu"), N.bits16(seeds, n, "cpu"), N.uniform(seeds, shape, "cpu"),
            N.random_bytes(seeds, shape, "cpu"), N.standard_normal(seeds, shape, "cpu"),
            N.scaled_normal_int16(seeds, shape, "cpu", [17.85, 300.0])]
    with cv.torch_only():
        ref = [N.bits32(seeds, n, "cpu"), N.bits16(seeds, n, "cpu"), N.uniform(seeds, shape, "cpu"),
               N.random_bytes(seeds, shape, "cpu"), N.standard_normal(seeds, shape, "cpu"),
               N.scaled_normal_int16(seeds, shape, "cpu", [17.85, 300.0])]
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and torch.equal(a, b)
    x = torch.randint(0, 256, (2, 3, 29, 31), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for name in ("gaussian_noise", "speckle_noise", "poisson_noise", "salt_pepper"):
        o = op(name)
        params = [o.sample(seeding.generator(1, k), (29, 31)) for k in range(2)]
        out = o.apply_batch(x, params, "rgb")
        with cv.torch_only():
            assert torch.equal(out, o.apply_batch(x, params, "rgb")), name


@pytest.mark.parametrize("channels", [3, 1])
def test_compiled_noise_add_equals_the_device_form(gravel, channels):
    """The CPU's compiled pass (each row's hashes, then its lookups and saturating adds; int8 tables up to
    scale 28, int16 above) gives the device form's pixels: scales either side of the switch up to std 1 (255
    levels), a mean shift, a batch with one scale per item, and a cropped view as input (odd widths)."""
    from augstudio.core.kernels import cv

    x = torch.stack([gravel, gravel.flip(-1)])
    for scales in ([0.0, 5.5], [28.0, 28.3], [255.0, 100.0]):
        for shift in (0, -40, 25):
            for img in (x, x[:, :, 3:-2, 5:]):
                a = N.add_scaled_normal(img, [8, 9], scales, shift, channels)
                with cv.torch_only():
                    b = N.add_scaled_normal(img, [8, 9], scales, shift, channels)
                assert a.dtype == torch.uint8 and torch.equal(a, b), (scales, shift, img.shape)


@pytest.mark.parametrize("peaks", [[0.5, 3.0], [30.0, 300.0], [900.0, 5e4]])
def test_compiled_poisson_bytes_equal_the_device_form(gravel, peaks):
    """On the CPU shot noise is one compiled pass per item (hash, CDF search, scaling to bytes); the torch
    form (what a GPU runs) gives the same bytes: low rates, the defaults, and rates above POISSON_EXACT (the
    normal approximation), on a cropped view too."""
    from augstudio.core.kernels import cv, jit

    assert jit.load("noise_jit") is not None
    x = torch.stack([gravel, gravel.flip(-1)])
    for img in (x, x[:, :, 3:-2, 5:]):
        a = N.poisson_bytes(img, [3, 2**62 + 7], peaks)
        with cv.torch_only():
            b = N.poisson_bytes(img, [3, 2**62 + 7], peaks)
        assert a.dtype == torch.uint8 and a.shape == img.shape and torch.equal(a, b), peaks
    assert (a != img).float().mean() > 0.05  # noise was added


@pytest.mark.parametrize("salt", [0.7, 0.3, 0.0, 1.0])
def test_compiled_speckle_and_salt_pepper_equal_the_device_form(gravel, salt):
    """Speckle and salt-and-pepper run as one compiled pass per item on the CPU; the torch form (what a GPU
    runs) gives the same bytes: per-item strengths, an odd number of values (the last hash's high half
    unused), salt shares whose float32 rounding differs from the float, a cropped view."""
    from augstudio.core.kernels import cv

    x = torch.stack([gravel, gravel.flip(-1)])[:, :, :, :-1]  # odd width: an odd count of values per item
    seeds = [11, 2**63 - 5]
    for img in (x, x[:, :, 3:-2, 5:]):
        got = [N.speckle_bytes(img, seeds, [0.05, 1.5]), N.salt_pepper_bytes(img, seeds, [0.3, 0.02], salt)]
        with cv.torch_only():
            want = [N.speckle_bytes(img, seeds, [0.05, 1.5]), N.salt_pepper_bytes(img, seeds, [0.3, 0.02], salt)]
        for a, b in zip(got, want):
            assert a.dtype == torch.uint8 and a.shape == img.shape and torch.equal(a, b), salt
    hit = (got[1][0] != img[0]).any(0).float().mean()
    assert 0.2 < hit < 0.4  # amount 0.3 (a pixel already 0 or 255 may not change)
