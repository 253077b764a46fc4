"""Fast style networks, weight-free randomisation, and the ``stylize`` recipe op (seeded, export-ready)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base.errors import ModelError, ParamError, RecipeError
from augstudio.core.base.jobs import run_job
from augstudio.core.engine.recipe import Recipe
from augstudio.core.methods.style import adain as A
from augstudio.core.methods.style import fast as FS
from augstudio.core.methods.style import randomize as R
from augstudio.core.methods.style.common import to_float


def _folder(root, arrays, size=48):
    root.mkdir(parents=True)
    for i, a in enumerate(arrays):
        Image.fromarray(np.ascontiguousarray(a)).convert("RGB").resize((size, size)).save(root / f"{i}.png")
    return root


def test_fast_style_training_lowers_loss_saves_and_applies(tmp_path):
    from skimage import data

    torch.set_num_threads(1)
    content = _folder(tmp_path / "content", [data.astronaut(), data.coffee(), data.chelsea()])
    style = tmp_path / "brick.png"
    Image.fromarray(data.brick()).resize((64, 64)).save(style)
    out = tmp_path / "brick-style.pth"
    r = run_job(FS.fast_train_job(content, style, out, width=8, iterations=12, batch_size=2, size=32,
                                  lr=1e-2, preview_every=6))
    assert np.mean(r.losses[-3:]) < 0.5 * np.mean(r.losses[:3]), r.losses
    model = FS.load_fast(out)
    assert model.width == 8 and model.meta["iterations"] == 12
    x = to_float(Image.fromarray(data.astronaut()).resize((40, 36)))
    y = FS.fast_stylize(model, x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    torch.testing.assert_close(FS.fast_stylize(model, x, alpha=0.0), x)
    with pytest.raises(ModelError, match="fast-train"):
        FS.load_fast(tmp_path / "missing.pth")
    torch.save({"something": 1}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not an augstudio fast style model"):
        FS.load_fast(tmp_path / "other.pth")


def test_randconv_and_random_stats(astronaut):
    x = to_float(astronaut.resize((48, 40)))
    a, b = R.randconv(x, 5, 0.2, seed=1), R.randconv(x, 5, 0.2, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, R.randconv(x, 5, 0.2, seed=2))
    torch.testing.assert_close(R.randconv(x, 3, 1.0, seed=3), x)  # mix 1 keeps the input
    # k = 1 is a random 3x3 colour matrix: each output channel is a linear mix of the input channels
    y = R.randconv(x, 1, 0.0, seed=4)
    design = torch.cat([x[0].reshape(3, -1).T, torch.ones(48 * 40, 1)], 1)
    target = y[0].reshape(3, -1).T
    inside = ((target > 1e-3) & (target < 1 - 1e-3)).all(1)  # clamping to 0..1 is the only non-linear part
    assert inside.float().mean() > 0.2
    design, target = design[inside], target[inside]
    fit = design @ torch.linalg.lstsq(design, target).solution
    assert (fit - target).abs().max() < 1e-3
    bands, low = R.laplacian_pyramid(x, 4)
    torch.testing.assert_close(R.collapse(bands, low), x)  # the weight-free "encoder" inverts exactly
    torch.testing.assert_close(R.random_stats(x, seed=0, strength=0.0), x, atol=2e-3, rtol=0)
    s = R.random_stats(x, seed=0, strength=0.8)
    assert (s - x).abs().mean() > 0.02


def _recipe(step, seed=7):
    return Recipe.from_dict({"seed": seed, "steps": [step]})


def test_stylize_op_randconv_and_stats_are_seeded_and_refuse_categorical(astronaut):
    img = astronaut.resize((48, 48))
    for method in ("randconv", "stats"):
        rec = _recipe({"op": "stylize", "method": method, "alpha": 1.0})
        out1, params = rec.apply(img, item="a.png", return_params=True)
        out2 = rec.apply(img, item="a.png")
        out3 = rec.apply(img, item="b.png")
        assert np.array_equal(np.asarray(out1), np.asarray(out2))
        assert not np.array_equal(np.asarray(out1), np.asarray(out3))
        assert not np.array_equal(np.asarray(out1), np.asarray(img))
        json.dumps(params)  # plain data, for the manifest
    gray = img.convert("L")
    assert rec.apply(gray).mode == "L"
    wafer = torch.randint(0, 3, (1, 16, 16), dtype=torch.uint8)
    with pytest.raises(RecipeError, match="categorical"):
        rec.apply(wafer, categorical=True)


def test_stylize_op_adain_with_a_style_bank_and_missing_model_messages(tmp_path, astronaut):
    from skimage import data

    torch.set_num_threads(1)
    bank = _folder(tmp_path / "bank", [data.brick(), data.gravel(), data.grass()], size=32)
    dec = A.init_random_(A.make_decoder(), torch.Generator().manual_seed(0))
    A.save_adain(A.AdaIN(A.encoder_from_torchvision("random", seed=1), dec), tmp_path / "model")
    step = {"op": "stylize", "method": "adain", "bank": str(bank), "model": str(tmp_path / "model" / "decoder.pth"),
            "alpha": 0.8, "max_size": 64}
    rec = _recipe(step)
    img = astronaut.resize((80, 72))
    styles = set()
    for item in range(6):
        out, params = rec.apply(img, item=item, return_params=True)
        assert out.size == (80, 72)
        styles.add(params[0]["params"]["style"])
        assert np.array_equal(np.asarray(out), np.asarray(rec.apply(img, item=item)))
    assert styles <= {"0.png", "1.png", "2.png"} and len(styles) >= 2  # one random style per item
    with pytest.raises(ParamError, match="adain-train"):
        _recipe({**step, "model": str(tmp_path / "nope" / "decoder.pth")})
    with pytest.raises(ParamError, match="needs 'bank'"):
        _recipe({"op": "stylize", "method": "adain", "model": step["model"]})
    (tmp_path / "model" / "vgg_normalised.pth").unlink()
    with pytest.raises(ModelError, match="vgg_normalised.pth"):
        _recipe(step).apply(img, item=99)


def test_cli_style_texture_and_clear_errors(tmp_path, capsys):
    from augstudio.cli import main
    from augstudio.core.io.images import read_image

    src = tmp_path / "gravel.png"
    from skimage import data

    Image.fromarray(data.gravel()).resize((32, 32)).save(src)
    out = tmp_path / "tex.png"
    assert main(["style", "texture", str(src), "--out", str(out), "--size", "24", "40", "-n", "3",
                 "--optimizer", "adam", "--pyramid", "1"]) == 0
    assert read_image(out).pixels.shape == (3, 24, 40)
    assert "style loss" in capsys.readouterr().out
    assert main(["style", "texture", str(src), "--out", str(src)]) == 2  # never overwrites a source
    assert "never overwrites" in capsys.readouterr().err
    assert main(["style", "adain", str(src), str(src), "-m", str(tmp_path / "none"), "--out", str(out)]) == 2  # a missing model: a bad argument
    assert "adain-train" in capsys.readouterr().err
