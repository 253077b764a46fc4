"""The colour and filter kernels' two forms: OpenCV / numpy / compiled on the CPU and torch (what an
accelerator runs, run here on the CPU through ``cv.torch_only()``). Tables, histograms, the grey image, the
saturation blend, the hue rotation and sharpness are exact in both; the separable blur agrees within one
grey level, on a small share of pixels, with each other and with torchvision's float formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from augstudio.core.kernels import color as C
from augstudio.core.kernels import cv, filters


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return torch.from_numpy(np.ascontiguousarray(data.astronaut()[::2, ::2])).permute(2, 0, 1).contiguous()


def _both(fn):
    a = fn()
    with cv.torch_only():
        b = fn()
    return a, b


def _close(a, b, share=0.01):
    d = (a.int() - b.int()).abs()
    assert a.shape == b.shape and d.max() <= 1 and (d > 0).float().mean() <= share, (d.max(), (d > 0).float().mean())


def test_tables_histograms_and_grey_are_exact_in_both_forms(photo):
    rng = np.random.default_rng(0)
    for _ in range(50):
        f, off = float(rng.uniform(0, 3)), float(rng.uniform(-200, 200))
        a, b = _both(lambda f=f, off=off: C.affine_lut(f, off, "cpu"))
        assert torch.equal(a, b)
        assert torch.equal(a, (C.levels("cpu") * f).add_(off).clamp_(0, 255).floor_().to(torch.uint8))
        a, b = _both(lambda f=f: C.affine_lut(f, None, "cpu"))  # brightness: no offset
        assert torch.equal(a, b) and torch.equal(a, (C.levels("cpu") * f).clamp_(0, 255).floor_().to(torch.uint8))
    lut = C.affine_lut(1.3, -20.0, "cpu")
    a, b = _both(lambda: C.apply_lut(photo, lut))
    assert torch.equal(a, b) and torch.equal(a, lut[photo.long()])
    luts = [lut, None, C.affine_lut(0.5, 3.0, "cpu")]
    a, b = _both(lambda: C.apply_luts(photo, luts))
    assert torch.equal(a, b) and torch.equal(a[1], photo[1])
    a, b = _both(lambda: C.histograms(photo))
    assert torch.equal(a, b) and int(a.sum()) == photo.numel()
    grey = C.gray(photo)
    assert torch.equal(grey.to(torch.uint8), TF.rgb_to_grayscale(photo))


@pytest.mark.parametrize("factor", [0.0, 0.4, 1.0, 1.7, 4.0])
def test_saturation_forms_are_exact(photo, factor):
    a, b = _both(lambda: C.saturate(photo, factor))
    _close(b, TF.adjust_saturation(photo, factor), share=0.02)  # (its blend rounds f x + (1 - f) g in one step)
    assert torch.equal(a, b)
    view = photo[:, 5:-7, 3:]  # rows with a stride
    a, b = _both(lambda: C.saturate(view, factor))
    assert torch.equal(a, b)


def _every_colour() -> torch.Tensor:
    c = torch.arange(1 << 24, dtype=torch.int32)
    return torch.stack([c >> 16, (c >> 8) & 255, c & 255]).to(torch.uint8).view(3, 4096, 4096)


def test_compiled_grey_is_torchs_grey_for_every_colour():
    """The CPU grey (compiled, in the form torch uses here) equals torch's own on all 16.7M colours, and
    the colours where fused multiply-adds move the floor are the ones ``color_jit`` lists; the other form
    (the control) differs from torch on exactly those."""
    from augstudio.core.kernels import color_jit

    x = _every_colour()
    a, b = _both(lambda: C.grayscale(x, 1))
    assert torch.equal(a, b)
    src = x.numpy()
    fused, plain = np.empty((4096, 4096), np.uint8), np.empty((4096, 4096), np.uint8)
    color_jit.gray(src, True, fused)
    color_jit.gray(src, False, plain)
    assert tuple(np.flatnonzero(fused != plain).tolist()) == color_jit.FMA_COLOURS
    _, form = C._compiled()
    other = plain if form else fused
    assert np.flatnonzero(other != b.numpy()[0]).tolist() == list(color_jit.FMA_COLOURS)
    with cv.torch_only():
        mean = C.gray_mean(x[:, 1000:3000, 7:])
    assert C.gray_mean(x[:, 1000:3000, 7:]) == mean


@pytest.mark.parametrize("hue", [-0.5, -0.21, 0.0, 0.07, 0.33, 0.5])
def test_hue_forms_are_exact_and_torchvisions(photo, hue):
    a, b = _both(lambda: C.adjust_hue(photo, hue))
    assert torch.equal(b, TF.adjust_hue(photo, hue))
    assert torch.equal(a, b)


def test_compiled_hue_is_the_torch_form_for_every_colour():
    x = _every_colour()
    a, b = _both(lambda: C.adjust_hue(x, -0.137))
    assert torch.equal(a, b)


@pytest.mark.parametrize("size,sigma", [(3, 0.6), (7, 1.0), (11, 1.5), (25, 4.0)])
def test_separable_blur_is_torchvisions_blur_within_one_level(photo, size, sigma):
    ref = TF.gaussian_blur(photo, [size, size], [sigma, sigma])
    a, b = _both(lambda: filters.gaussian_blur(photo, size, sigma))
    _close(a, ref)
    _close(b, ref)


def test_blur_kernel_is_the_gaussian_rounded_once_and_close_to_torchvisions():
    """The kernel is the float64 Gaussian rounded once to float32 (the same on every machine), within 1e-6
    of the peak of torchvision's float32 kernel (whose tails round worse)."""
    from torchvision.transforms.v2.functional._misc import _get_gaussian_kernel1d

    for sigma in (0.05, 0.6, 1.0, 2.3, 7.5):
        size = 2 * math.ceil(3 * sigma) + 1
        xs = [(i - (size - 1) / 2) / sigma for i in range(size)]
        pdf = [math.exp(-0.5 * v * v) for v in xs]
        exact = np.array([p / math.fsum(pdf) for p in pdf])
        k = filters.gaussian_kernel1d(size, sigma)
        assert k.dtype == np.float32 and np.array_equal(k, exact.astype(np.float32)), sigma
        ref = _get_gaussian_kernel1d(size, sigma, dtype=torch.float32, device="cpu").numpy()
        assert np.abs(k.astype(np.float64) - ref).max() <= 1e-6 * ref.max(), sigma



def test_blur_kernel_in_python_floats_equals_numpys_float64_kernel():
    """The kernel is made in Python floats (cheaper than numpy calls with cold caches) and cached: the same
    float32 values as numpy's float64 linspace / exp / sum over many (size, sigma), and read-only, so a
    caller cannot change the cached one."""
    rng = np.random.default_rng(5)

    def numpy_kernel(size, sigma):
        half = (size - 1) * 0.5
        x = np.linspace(-half, half, size) / sigma
        pdf = np.exp(-0.5 * x * x)
        return (pdf / pdf.sum()).astype(np.float32)

    sizes = rng.choice(np.arange(1, 302, 2), 1500)
    sigmas = np.concatenate([rng.uniform(0.01, 50.0, 750), np.round(rng.uniform(0.1, 2.0, 750), 6)])
    differ = [(int(s), float(g)) for s, g in zip(sizes, sigmas)
              if not np.array_equal(filters.gaussian_kernel1d(int(s), float(g)), numpy_kernel(int(s), float(g)))]
    assert not differ, differ[:5]
    k = filters.gaussian_kernel1d(7, 1.0)
    assert filters.gaussian_kernel1d(7, 1.0) is k and not k.flags.writeable
    with pytest.raises(ValueError):
        k[0] = 1.0

@pytest.mark.parametrize("factor", [0.0, 0.5, 1.0, 1.8, 0.123457, 2.718282])
def test_sharpness_is_torchvisions_byte_for_byte_in_both_forms(photo, factor):
    """The compiled CPU loop smooths with whole numbers and blends as torch's kernels on this machine do
    (fused or not): torchvision's bytes, on a photo, a view with odd strides, one and four channels."""
    from augstudio.core.kernels import jit

    assert jit.load("filters_jit") is not None and C.torch_fuses() is not None  # the loop is what runs
    grey = photo[:1]
    rgba = torch.cat([photo, photo[:1].flip(-1)])
    view = photo[:, 7:200, 3:251]
    for x in (photo, grey, rgba, view, photo[:, :3, :3]):
        a, b = _both(lambda x=x: filters.sharpen(x, factor))
        want = torch.cat([TF.adjust_sharpness(x[i:i + 3], factor) for i in range(0, len(x), 3)])  # 1 or 3 each
        assert torch.equal(a, want) and torch.equal(b, want), (x.shape, factor)
    # a control that must not match: the border is torchvision's (kept), not smoothed
    a = filters.sharpen(photo, factor)
    if factor != 1.0:
        assert not torch.equal(a[:, 1:-1, 1:-1], photo[:, 1:-1, 1:-1])
    assert torch.equal(a[:, 0], photo[:, 0]) and torch.equal(a[:, :, -1], photo[:, :, -1])


def test_cpu_kernels_do_not_depend_on_the_thread_count(photo):
    old = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append([C.saturate(photo, 1.6), C.adjust_hue(photo, 0.2), filters.gaussian_blur(photo, 9, 2.0),
                         filters.sharpen(photo, 1.7), C.histograms(photo)])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_bitwise_forms_are_their_tables(photo):
    from augstudio.core.ops import get_op

    for name, params in [("invert", {}), ("posterize", {"bits": 3}), ("posterize", {"bits": 8}),
                         ("solarize", {"threshold": 100.0}), ("solarize", {"threshold": 99.5}),
                         ("solarize", {"threshold": 0.0}), ("solarize", {"threshold": 256.0}),
                         ("solarize", {"threshold": 0.5}), ("solarize", {"threshold": 1.0}),
                         ("solarize", {"threshold": 255.0}), ("solarize", {"threshold": 255.5})]:
        o = get_op(name)()
        for x in (photo, photo[:, 5:-3, 2:-7]):  # contiguous, and a crop's view
            want = o.lut(params, "cpu")[x.long()]
            a, b = _both(lambda o=o, params=params, x=x: o.apply(x, params, "rgb"))
            assert torch.equal(a, want) and torch.equal(b, want), (name, params)


def test_lookup_tables_without_stringzilla_give_the_same_bytes(photo, monkeypatch):
    lut = C.affine_lut(1.7, -30.0, "cpu")
    a = C.apply_lut(photo, lut)
    monkeypatch.setitem(cv._STATE, "stringzilla", False)
    assert torch.equal(C.apply_lut(photo, lut), a) and torch.equal(a, lut[photo.long()])


def test_histogram_tables_are_the_same_from_numpy_and_torch(photo):
    from augstudio.core.ops import color as ops_color

    for name in ("equalize", "autocontrast"):
        o = ops_color.Equalize() if name == "equalize" else ops_color.AutoContrast()
        a, b = _both(lambda o=o: o.apply(photo, {}, "rgb"))
        assert torch.equal(a, b), name
        ref = TF.equalize(photo) if name == "equalize" else None
        assert ref is None or torch.equal(a, ref)
    h = C.histograms(photo)
    for i in range(3):
        t = ops_color.autocontrast_lut(h[i])
        assert torch.equal(torch.from_numpy(ops_color.autocontrast_lut(h[i].numpy())), t)


def _gamma_reference(g: float) -> np.ndarray:
    """The table from the C library's float64 ``pow`` (Python's ``math.pow``), rounded once to float32."""
    unit = (np.arange(256, dtype=np.float32) / np.float32(255.0)).tolist()
    p = np.array([math.pow(v, g) for v in unit]).astype(np.float32)
    return (np.minimum(p, np.float32(1)) * np.float32(255.999)).astype(np.uint8)


def test_gamma_table_is_the_correctly_rounded_power_on_every_machine():
    """The table is built on the CPU for every device from the float64 power rounded once to float32: the
    C library's ``pow`` gives the same powers and table, so no kernel set or device changes it. torch's
    float32 ``pow`` differs in the last bit on a quarter of the levels; the table it gives is within one
    level, and the same for most gammas."""
    rng = np.random.default_rng(1)
    gammas = [round(float(g), 6) for g in np.concatenate(
        [rng.uniform(0.01, 100.0, 300), rng.uniform(0.3, 3.0, 300), [1.0, 0.5, 2.0]])]
    same_as_torch = 0
    for g in gammas:
        unit = (np.arange(256, dtype=np.float32) / np.float32(255.0)).tolist()
        assert np.array_equal(C.gamma_powers(g), np.array([math.pow(v, g) for v in unit]).astype(np.float32)), g
        t = C.gamma_lut(g, "cpu")
        assert np.array_equal(t.numpy(), _gamma_reference(g)), g
        torch_table = (C.levels("cpu") / 255.0).pow_(g).clamp_(0, 1).mul_(255.999).to(torch.uint8)
        assert (t.int() - torch_table.int()).abs().max() <= 1, g
        same_as_torch += torch.equal(t, torch_table)
    assert same_as_torch >= 0.98 * len(gammas)
    # gammas where torch's AVX-512 table differs by a level (1.188327) and where its default kernels' does
    # (7.366263): ours is the reference table on every machine
    for g in (1.188327, 0.868478, 7.366263):
        assert np.array_equal(C.gamma_lut(g, "cpu").numpy(), _gamma_reference(g)), g
