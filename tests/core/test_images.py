"""images.py: every accepted Pillow mode gives its documented uint8 form; EXIF orientation; categorical
round trip; decompression-bomb limit; atomic writes."""

from __future__ import annotations

import errno
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from augstudio.core.base.errors import ImageError
from augstudio.core.io import images


def _photo(astronaut, h=40, w=56) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(astronaut)[60:60 + h * 3:3, 180:180 + w * 3:3])


def _roundtrip(im: Image.Image, path, **save) -> images.Picture:
    im.save(path, **save)
    return images.read_image(path)


def _hwc(pic) -> np.ndarray:
    return pic.pixels.permute(1, 2, 0).numpy()


def test_rgb_and_gray_are_exact(astronaut, tmp_path):
    a = _photo(astronaut)
    pic = _roundtrip(Image.fromarray(a), tmp_path / "a.png")
    assert pic.kind == "rgb" and pic.pixels.shape == (3, 40, 56)
    np.testing.assert_array_equal(_hwc(pic), a)
    g = a[:, :, 1]
    pic = _roundtrip(Image.fromarray(g), tmp_path / "g.png")
    assert pic.kind == "gray"
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], g)


def test_la_and_rgba(astronaut, tmp_path):
    a = _photo(astronaut)
    alpha = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    pic = _roundtrip(Image.fromarray(np.dstack([a, alpha])), tmp_path / "rgba.png")
    assert pic.kind == "rgba"
    np.testing.assert_array_equal(_hwc(pic), np.dstack([a, alpha]))
    la = Image.fromarray(np.dstack([a[:, :, 0], alpha]), mode="LA")
    pic = _roundtrip(la, tmp_path / "la.png")
    assert pic.kind == "rgba", "LA: grey copied to R, G, B, alpha kept"
    np.testing.assert_array_equal(_hwc(pic), np.dstack([a[:, :, 0]] * 3 + [alpha]))


def test_one_bit_is_0_or_255(tmp_path):
    bits = (np.indices((16, 24)).sum(0) % 2).astype(bool)
    pic = _roundtrip(Image.fromarray(bits), tmp_path / "b.png")
    assert pic.kind == "gray"
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], bits.astype(np.uint8) * 255)


def test_sixteen_bit_scales_by_255_over_65535(tmp_path):
    v = np.array([[0, 257, 1000, 32768, 65535, 12345]], dtype=np.uint16)
    im = Image.fromarray(v)
    assert im.mode == "I;16"
    pic = _roundtrip(im, tmp_path / "s.png")
    expected = np.rint(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], expected)


def test_mode_i_32bit(tmp_path):
    small = np.array([[0, 7, 255]], dtype=np.int32)
    pic = _roundtrip(Image.fromarray(small, mode="I"), tmp_path / "small.tif")
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], [[0, 7, 255]])  # already 0..255: kept
    wide = np.array([[0, 65535, 70000]], dtype=np.int32)
    pic = _roundtrip(Image.fromarray(wide, mode="I"), tmp_path / "wide.tif")
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], [[0, 255, 255]])  # 16-bit range, clipped


def test_float_tiff_unit_range_and_clipping(tmp_path):
    f = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    pic = _roundtrip(Image.fromarray(f, mode="F"), tmp_path / "f.tif")
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], np.rint(f * 255).astype(np.uint8))
    g = np.array([[-5.0, 3.0, 300.0, np.nan]], dtype=np.float32)
    pic = _roundtrip(Image.fromarray(g, mode="F"), tmp_path / "g.tif")
    np.testing.assert_array_equal(_hwc(pic)[:, :, 0], [[0, 3, 255, 0]])


def test_cmyk_jpeg_matches_pillows_conversion(astronaut, tmp_path):
    path = tmp_path / "c.jpg"
    Image.fromarray(_photo(astronaut)).convert("CMYK").save(path, quality=95)
    pic = images.read_image(path)
    assert pic.kind == "rgb"
    with Image.open(path) as ref:
        np.testing.assert_array_equal(_hwc(pic), np.asarray(ref.convert("RGB")))


def test_palette_with_and_without_transparency_stays_categorical_and_round_trips(tmp_path):
    idx = (np.indices((20, 30)).sum(0) % 3).astype(np.uint8)
    for transparency in (None, 0):
        im = Image.fromarray(idx, mode="P")
        im.putpalette([0, 0, 0, 10, 200, 10, 220, 30, 30])
        kw = {} if transparency is None else {"transparency": transparency}
        pic = _roundtrip(im, tmp_path / f"p{transparency}.png", **kw)
        assert pic.kind == "categorical"
        np.testing.assert_array_equal(_hwc(pic)[:, :, 0], idx)
        assert pic.transparency == transparency
        data = images.encode(pic, "png")
        back = Image.open(io.BytesIO(data))
        assert back.mode == "P", "categorical pictures are saved back as palette PNGs"
        np.testing.assert_array_equal(np.asarray(back), idx)
        assert back.getpalette()[:9] == [0, 0, 0, 10, 200, 10, 220, 30, 30]
        assert back.info.get("transparency") == transparency
    with pytest.raises(ImageError, match="cannot be saved as JPEG"):
        images.encode(pic, "jpg")


@pytest.mark.parametrize("orientation,ref", [
    (1, lambda a: a), (2, lambda a: a[:, ::-1]), (3, lambda a: a[::-1, ::-1]), (4, lambda a: a[::-1]),
    (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientation_applied(astronaut, tmp_path, orientation, ref):
    a = _photo(astronaut)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("RGB"))  # the pixels as stored, orientation not applied
        expected_pil = np.asarray(ImageOps.exif_transpose(raw))
    pic = images.read_image(path)
    np.testing.assert_array_equal(_hwc(pic), ref(stored))
    np.testing.assert_array_equal(_hwc(pic), expected_pil)


def test_pixel_limit_is_user_raisable(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(images, "_pixel_limit", 1000)
    with pytest.raises(ImageError) as ei:
        images.read_image(path)
    assert str(path) in str(ei.value) and "40x30 = 1,200 pixels, over the limit of 1,000" in str(ei.value)
    images.set_pixel_limit(1200)
    assert images.read_image(path).size == (30, 40)
    with pytest.raises(ValueError):
        images.set_pixel_limit(0)


def test_pixel_limit_environment_variable(monkeypatch):
    monkeypatch.setenv("AUGSTUDIO_MAX_PIXELS", "5000")
    assert images._env_limit() == 5000
    monkeypatch.setenv("AUGSTUDIO_MAX_PIXELS", "lots")
    with pytest.warns(UserWarning, match="not a whole number"):
        assert images._env_limit() == images._DEFAULT_PIXEL_LIMIT


def test_raising_the_limit_above_pillows_lets_pillow_open_it(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(images, "_pixel_limit", images._pixel_limit)
    images.set_pixel_limit(10_000)
    assert Image.MAX_IMAGE_PIXELS * 2 >= 10_000


def test_image_error_names_the_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageError) as ei:
        images.read_image(p)
    assert ei.value.path == str(p) and str(p) in str(ei.value) and "file not found" in str(ei.value)
    with pytest.raises(ImageError, match="is a folder"):
        images.read_image(tmp_path)


def test_encode_is_deterministic_and_exact_for_png(astronaut):
    t = torch.from_numpy(_photo(astronaut)).permute(2, 0, 1).contiguous()
    pic = images.Picture(t, "rgb")
    a, b = images.encode(pic, "png"), images.encode(pic, "png")
    assert a == b
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(a))), _photo(astronaut))
    assert images.encode(pic, "jpg") == images.encode(pic, "jpg")
    with pytest.raises(ImageError, match="unknown output format"):
        images.encode(pic, "xyz")


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    dest = tmp_path / "x.bin"
    dest.write_bytes(b"old")

    def full_disk(path, data):
        with open(path, "xb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images, "write_file", full_disk)
    with pytest.raises(OSError):
        images.atomic_write_bytes(dest, b"new content")
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_atomic_write_replaces_a_symlink_not_its_target(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"precious")
    link = tmp_path / "out.png"
    link.symlink_to(target)
    images.atomic_write_bytes(link, b"new")
    assert target.read_bytes() == b"precious"
    assert not link.is_symlink() and link.read_bytes() == b"new"


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_layout_conversions_are_exact_copies_for_any_channel_count(channels):
    """io.layout's split / merge (2 to 4 channels) and numpy (others) give torch's permuted copy, as new
    writable memory, also from a read-only decoder array and for a cropped (strided) tensor."""
    from augstudio.core.io.layout import interleaved_of, planes_of

    a = np.random.default_rng(channels).integers(0, 256, (23, 17, channels), dtype=np.uint8)
    a.flags.writeable = False  # what np.asarray(PIL image) gives
    t = planes_of(a)
    assert t.is_contiguous() and torch.equal(t, torch.from_numpy(a.copy()).permute(2, 0, 1))
    before = int(a[0, 0, 0])
    t[0, 0, 0] = before ^ 1  # its own, writable memory: the decoder's array is untouched
    assert int(a[0, 0, 0]) == before
    back = interleaved_of(t)
    assert back.flags.c_contiguous and np.array_equal(back, t.permute(1, 2, 0).numpy())
    crop = t[:, 3:19, 2:11]
    assert np.array_equal(interleaved_of(crop), crop.permute(1, 2, 0).numpy())
    assert tuple(planes_of(a[:, :, 0]).shape) == (1, 23, 17)


def test_a_decoders_hwc_array_passed_as_a_view_is_made_planar_once(astronaut):
    """``torch.from_numpy(hwc).permute(2, 0, 1)`` (what the numpy error suggests) becomes a contiguous
    planar picture on entry, with the same pixels; other layouts are kept as given."""
    from augstudio.core.engine.recipe import Recipe

    hwc = _photo(astronaut)
    view = torch.from_numpy(hwc).permute(2, 0, 1)
    pic, tag = images.as_picture(view)
    assert tag == "tensor" and pic.pixels.is_contiguous() and torch.equal(pic.pixels, view)
    crop = view.contiguous()[:, 2:30, 3:40]  # planar, strided rows: left alone
    assert images.as_picture(crop)[0].pixels.data_ptr() == crop.data_ptr()
    recipe = Recipe.from_dict({"seed": 3, "steps": [
        {"op": "rotate", "degrees": 20}, {"op": "color_jitter", "brightness": 0.4, "saturation": 0.4}]})
    assert torch.equal(recipe.apply(view, item=5), recipe.apply(view.contiguous(), item=5))


def test_the_interleaved_test_reads_the_strides_as_permute_would():
    """``as_picture`` decides "an H x W x C array seen as C x H x W" from the strides; over layouts with
    size-1 sides, crops, channel slices and planar tensors it answers as ``permute(1, 2, 0).is_contiguous()``
    (a control: a stride rule without the size-1 exemptions gets some of them wrong)."""
    cases = []
    for c in (2, 3, 4):
        for h, w in ((1, 1), (1, 5), (5, 1), (4, 6), (7, 7)):
            hwc = torch.zeros(h, w, c, dtype=torch.uint8)
            wide = torch.zeros(h + 2, w + 3, c + 1, dtype=torch.uint8)
            cases += [hwc.permute(2, 0, 1), torch.zeros(c, h, w, dtype=torch.uint8),
                      wide.permute(2, 0, 1)[:c, 1:h + 1, 2:w + 2], wide.permute(2, 0, 1)[:c, :h, :w],
                      wide[:h, :w, :].permute(2, 0, 1), torch.zeros(c, h + 1, w, dtype=torch.uint8)[:, 1:],
                      torch.zeros(h, c, w, dtype=torch.uint8).permute(1, 0, 2)]
    naive = 0
    for t in cases:
        want = t.permute(1, 2, 0).is_contiguous()
        assert images._interleaved(t.stride(), *t.shape) == want, (t.shape, t.stride())
        s, (c, h, w) = t.stride(), t.shape
        naive += (s[0] == 1 and s[2] == c and s[1] == c * w) != want
    assert naive > 0
