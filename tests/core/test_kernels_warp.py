"""The warp kernel's two forms: OpenCV on the CPU and torch's grid_sample (what an accelerator runs, here run
on the CPU through ``cv.torch_only()``) agree within one grey level for every interpolation, border, shrink
and clip box; nearest is one exact gather on both; the antialias block average is the same integer result
in numpy and torch; regions shared by a batch on an accelerator give each item its own result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augstudio.core.kernels import cv
from augstudio.core.kernels import warp as W


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return torch.from_numpy(np.ascontiguousarray(data.astronaut()[::2, ::2])).permute(2, 0, 1).contiguous()


def _cases(h, w):
    cy, cx = (h - 1) / 2, (w - 1) / 2
    return [
        (W.rotation(23.0, cx, cy), (h, w)),
        (W.matmul(W.box_to_size(10, 20, h - 30, w - 40, (96, 96)), W.rotation(-7.0, cx, cy)), (96, 96)),
        (W.box_to_size(0, 0, h, w, (50, 30)), (50, 30)),  # a 5x / 8x shrink: block averages first
        (W.box_to_size(0, 0, h, w, (300, 170)), (300, 170)),  # a resize up (OpenCV's resize)
        (W.matmul(W.scaling(1.7, 0.8, 100, 100), W.shearing(12.0, 0.0, cx, cy)), (120, 160)),
        (W.matmul(W.box_to_size(30, 40, 150, 120, (64, 64)), W.rotation(90.0, cx, cy)), (64, 64)),
    ]


def _both(x, m, out, **kw):
    a = W.warp(x, m, out, **kw)
    with cv.torch_only():
        b = W.warp(x, m, out, **kw)
    return a, b


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_opencv_and_torch_forms_agree_within_one_grey_level(photo, interpolation, mode):
    for channels in (3, 1, 4):
        x = photo[:channels] if channels < 4 else torch.cat([photo, photo[:1]])
        for m, out in _cases(*x.shape[-2:]):
            a, b = _both(x, m, out, interpolation=interpolation, mode=mode, fill=[10, 200, 30, 255])
            d = (a.int() - b.int()).abs()
            assert a.shape == b.shape == (channels, *out)
            # OpenCV's float warp differs only where float sums tie; its separable resize (edge borders)
            # weighs in 11-bit fixed point and its block means before a 2x+ shrink are rounded to levels:
            # more pixels round the other way there, none by more than one level
            shrink = max(W.axis_scales(m)) >= 2
            share = 0.35 if shrink else 0.15 if mode == "edge" and out == (300, 170) else 0.02
            assert d.max() <= 1 and (d > 0).float().mean() < share, (channels, out, d.max(), (d > 0).float().mean())


def test_clip_boxes_read_only_their_box_in_both_forms(photo):
    box = (40, 30, 70, 90)  # top, left, height, width
    for out in [(224, 224), (20, 30), (70, 90)]:
        m = W.box_to_size(*box, out)
        a, b = _both(photo, m, out, clip=box)
        assert (a.int() - b.int()).abs().max() <= 1
        # crop, then resize: the same as resizing the cropped image on its own
        crop = photo[:, 40:110, 30:120].contiguous()
        ref = W.warp(crop, W.box_to_size(0, 0, 70, 90, out), out, mode="edge")
        assert torch.equal(a, ref)
    # the nearest form reads the box too: each output pixel is one of the 2 x 2 block it halves
    near = W.warp(photo, W.box_to_size(*box, (35, 45)), (35, 45), "nearest", clip=box)
    crop = photo[:, 40:110, 30:120].int()
    blocks = torch.stack([crop[:, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)])
    assert bool(((blocks - near.int()).abs().sum(1) == 0).any(0).all())


def test_nearest_is_one_exact_gather_on_every_form(photo):
    for mode in ("constant", "edge", "reflect"):
        for m, out in _cases(*photo.shape[-2:]):
            a, b = _both(photo, m, out, interpolation="nearest", mode=mode, fill=7)
            assert torch.equal(a, b)
            inv = W.inverse(m)
            for v, u in [(0, 0), (out[0] - 1, out[1] - 1), (out[0] // 2, out[1] // 3)]:
                xi = round(inv[0][0] * u + inv[0][1] * v + inv[0][2])
                yi = round(inv[1][0] * u + inv[1][1] * v + inv[1][2])
                h, w = photo.shape[-2:]
                if 0 <= xi < w and 0 <= yi < h:
                    assert torch.equal(a[:, v, u], photo[:, yi, xi])
                elif mode == "constant":
                    assert (a[:, v, u] == 7).all()


def test_integer_maps_are_slices_flips_and_transposes(photo):
    h, w = photo.shape[-2:]
    hflip = ((-1.0, 0.0, w - 1.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    quarter = ((0.0, 1.0, 0.0), (-1.0, 0.0, w - 1.0), (0.0, 0.0, 1.0))
    assert torch.equal(W.warp(photo, hflip, (h, w), "nearest"), photo.flip(-1))
    assert torch.equal(W.warp(photo, quarter, (w, h), "nearest"), torch.rot90(photo, 1, (-2, -1)))
    crop = W.matmul(W.translation(-5, -9), hflip)
    assert torch.equal(W.warp(photo, crop, (40, 50), "nearest"), photo.flip(-1)[:, 9:49, 5:55])
    padded = W.warp(photo, W.translation(3, 3), (h + 6, w + 6), "nearest", fill=9)
    assert torch.equal(padded[:, 3:-3, 3:-3], photo) and (padded[:, :3] == 9).all()


@pytest.mark.parametrize("ky,kx", [(2, 2), (3, 2), (5, 7), (16, 16), (1, 4)])
def test_block_means_are_exact_in_torch_and_rounded_by_opencv(ky, kx):
    x = torch.randint(0, 256, (3, 61, 83), dtype=torch.uint8, generator=torch.Generator().manual_seed(ky * kx))
    a = W.box_reduce(x, ky, kx)
    with cv.torch_only():
        b = W.box_reduce(x, ky, kx)
    hh, ww = 61 // ky, 83 // kx
    means = x[:, :hh * ky, :ww * kx].double().view(3, hh, ky, ww, kx).mean((2, 4))
    assert a.dtype == torch.uint8 and b.dtype == torch.float32
    assert torch.allclose(b.double(), means, atol=1e-4) and (a.double() - means).abs().max() <= 0.5


def test_items_sharing_a_region_on_an_accelerator_get_their_own_pixels(photo):
    """The accelerator form runs items of one block size over the union of their regions; blocks are
    aligned to the image, so each item's result stays within a grey level of its own (CPU) result."""
    h, w = photo.shape[-2:]
    out = (10, 10)
    mats = [W.box_to_size(0, 0, 120, 120, out), W.matmul(W.box_to_size(120, 110, 120, 125, out),
                                                         W.rotation(3.0, 127.5, 127.5))]
    invs = [W.inverse(m) for m in mats]
    regions = [W._region(iv, out, (h, w), "bilinear", "constant", True, None) for iv in invs]
    assert regions[0][1] == regions[1][1] and regions[0][0] != regions[1][0]
    x = photo[None].expand(2, -1, -1, -1)
    shared = W._warp_group(x, invs, regions, out, "bilinear", [0.0] * 3, "constant", False)
    for i, m in enumerate(mats):
        own = W.warp(photo, m, out)
        assert (shared[i].int() - own.int()).abs().max() <= 1


def test_opencv_results_do_not_depend_on_the_thread_count(photo):
    m = W.matmul(W.box_to_size(5, 5, 200, 210, (150, 150)), W.rotation(13.0, 127.5, 127.5))
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(W.warp(photo, m, (150, 150)))
            outs.append(W.warp(photo, W.box_to_size(0, 0, 256, 256, (600, 500)), (600, 500), mode="edge"))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(outs[0], outs[2]) and torch.equal(outs[1], outs[3])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_border_copies_equal_the_gather(photo, mode):
    """Crops and pads reaching past the image: the compiled constant fill (``warp_jit.pad_constant``), OpenCV's
    border copy (the other modes, and views) and the torch gather give the same bytes, each channel its fill."""
    from augstudio.core.kernels import jit
    from augstudio.core.ops.geometry import _window

    assert jit.load("warp_jit") is not None
    six = torch.cat([photo, photo.flip(0)])  # 6 distinct planes
    fills = [5, 6, 7, 250, 0, 128]
    windows = [(-4, -4, 264, 264), (-30, 100, 80, 200), (200, -7, 90, 60), (-2, -3, 40, 300), (10, 20, 30, 40)]
    for c in (1, 3, 4, 6):
        for x in (six[:c], six[:c, 3:-5, 2:-1]):  # contiguous, and a view whose rows are strided
            for top, left, height, width in windows:
                a = _window(x, top, left, height, width, mode, fills[:c])
                b = W.warp(x, W.translation(-left, -top), (height, width), "nearest", fills[:c], mode)
                assert torch.equal(a, b), (mode, c, top, left)
                assert a.is_contiguous() or top >= 0 and left >= 0  # a crop inside stays a view
    # controls: a window one column off, and the fills in the wrong order, are not what the gather gives
    a = _window(six, -4, -4, 264, 264, mode, fills)
    assert not torch.equal(a, W.warp(six, W.translation(3, 4), (264, 264), "nearest", fills, mode))
    if mode == "constant":
        assert not torch.equal(a, W.warp(six, W.translation(4, 4), (264, 264), "nearest", fills[::-1], mode))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_interleaved_and_planar_opencv_calls_give_the_same_bytes(photo, interpolation, mode, monkeypatch):
    """The CPU warp interleaves up to 4 planes per OpenCV call (3 get a copied 4th for bilinear / nearest, or
    go as 3 or as planes where that is timed faster); every channel must come out as warping it alone gives,
    with its own fill, for 1 to 6 channels, turned and axis-aligned maps."""
    fills = [10.0, 200.0, 30.0, 255.0, 77.0, 5.0]
    src = torch.cat([photo, photo.flip(0)]).numpy()  # 6 distinct planes
    turned = W.inverse(W.matmul(W.scaling(1.3, 0.9, 60, 70), W.rotation(17.0, 127.5, 127.5)))
    aligned = W.inverse(W.matmul(W.translation(-7.3, 4.6), W.scaling(1.3, 0.9, 60, 70)))
    for inv in (turned, aligned):
        for c in range(1, 7):
            outs = []
            # never interleave / always / always but where planar axis-aligned warps are timed faster (IPP)
            for ratio, planar in ((0, False), (10**9, False), (10**9, True)):
                monkeypatch.setattr(cv, "_INTERLEAVE_RATIO", ratio)
                monkeypatch.setattr(cv, "_PLANAR", {"aligned": planar})
                dst = np.zeros((c, 90, 110), np.uint8)
                cv.warp_affine(src[:c], inv, (90, 110), interpolation, mode, fills[:c], dst)
                outs.append(dst)
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2]), (c, interpolation, mode)
            assert outs[0].any(axis=(1, 2)).all()  # every plane was written


def test_the_planar_layout_is_timed_once_and_only_steers_axis_aligned_bilinear_warps(monkeypatch):
    """``planar_warps_faster`` times both layouts once per process; the warp asks it only for an axis-aligned
    bilinear map with a constant or edge border (turns, reflect borders and other interpolations keep their
    fixed layouts), and what it answers is what runs."""
    monkeypatch.setattr(cv, "_PLANAR", {})
    first = cv.planar_warps_faster()
    assert isinstance(first, bool) and cv._PLANAR == {"aligned": first}
    asked = []
    monkeypatch.setattr(cv, "planar_warps_faster", lambda: asked.append("asked") or True)
    layouts = []
    real = cv._warp
    monkeypatch.setattr(cv, "_warp", lambda *a: layouts.append(a[-1]) or real(*a))
    src = np.zeros((3, 40, 50), np.uint8)
    dst = np.empty_like(src)
    move, turn = W.translation(1.5, 2.5), W.rotation(10.0, 20.0, 25.0)
    for inv, interpolation, mode, want in (
            (move, "bilinear", "constant", ["asked", True]), (move, "bilinear", "edge", ["asked", True]),
            (turn, "bilinear", "constant", [False]), (move, "bilinear", "reflect", [False]),
            (move, "bicubic", "constant", [False]), (move, "nearest", "constant", [False])):
        asked.clear()
        layouts.clear()
        cv.warp_affine(src, W.inverse(inv), (40, 50), interpolation, mode, [0.0] * 3, dst)
        assert asked + layouts == want, (inv, interpolation, mode)


def test_scratch_is_reused_and_written_through_the_caches():
    """OpenCV's merge writes a 64-byte aligned destination with non-temporal stores (the warp reading it
    next then waits on memory); scratch starts one byte past the boundary, and is reused while it fits."""
    a = cv._scratch("test", (3, 100, 7))
    b = cv._scratch("test", (50, 10))
    assert a.shape == (3, 100, 7) and b.shape == (50, 10) and a.dtype == np.uint8
    assert a.__array_interface__["data"][0] % 64 == 1 == b.__array_interface__["data"][0] % 64
    assert np.shares_memory(a, b)  # the smaller request reuses the buffer
    big = cv._scratch("test", (cv._SCRATCH_KEEP + 1,))
    assert big.__array_interface__["data"][0] % 64 == 1
    assert np.shares_memory(cv._scratch("test", (10,)), a)  # the oversized one was not kept


def test_compiled_nearest_gather_is_the_torch_gather(photo):
    """On the CPU the nearest gather is one compiled loop (``warp_jit``); an accelerator runs torch's
    ``index_select`` and ``where``. The same bytes, with per-channel fills, clip boxes and batches."""
    from augstudio.core.kernels import jit

    assert jit.load("warp_jit") is not None  # the compiled loop is what runs below
    x = torch.cat([photo, photo.flip(0)])  # 6 distinct planes
    ms = [W.rotation(31.0, 100.0, 90.0), W.matmul(W.scaling(0.4, 1.7, 20, 30), W.shearing(20.0, 5.0, 60, 60))]
    for c in (1, 3, 4, 6):
        batch = x[None, :c].expand(2, c, *x.shape[-2:]).contiguous()
        for mode in W.MODES:
            for clips in (None, [(20, 30, 100, 120), None]):
                kw = dict(interpolation="nearest", mode=mode, fill=[9, 80, 150, 220, 33, 3][:c], clips=clips)
                a = W.warp_batch(batch, ms, (70, 90), **kw)
                with cv.torch_only():
                    b = W.warp_batch(batch, ms, (70, 90), **kw)
                assert torch.equal(a, b), (c, mode, clips)
                if mode == "constant" and clips is None:  # the rotation leaves corners outside: filled per channel
                    assert [int(v) for v in a[0, :, 0, 0]] == kw["fill"]
