"""AdaIN: the pytorch-AdaIN layer layout, the statistics it transfers, released-layout files, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base.errors import ModelError
from augstudio.core.base.jobs import run_job
from augstudio.core.methods.style import adain as A
from augstudio.core.methods.style.common import to_float

# Conv module indices of naoto0804/pytorch-AdaIN net.py (read from its nn.Sequential listings).
PORT_ENCODER_CONVS = [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51]
PORT_DECODER_CONVS = {1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256),
                      18: (128, 128), 21: (64, 128), 25: (64, 64), 28: (3, 64)}


def test_layout_matches_the_released_files():
    enc, dec = A.make_encoder(), A.make_decoder()
    assert len(enc) == 53 and len(dec) == 29
    assert sorted({int(k.split(".")[0]) for k in enc.state_dict()}) == PORT_ENCODER_CONVS
    assert {int(k.split(".")[0]): tuple(v.shape[:2]) for k, v in dec.state_dict().items()
            if k.endswith("weight")} == PORT_DECODER_CONVS
    assert isinstance(enc[30], torch.nn.ReLU) and enc[29].out_channels == 512  # relu4_1 closes module 30


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    dec = A.init_random_(A.make_decoder(), torch.Generator().manual_seed(0))
    return A.AdaIN(A.encoder_from_torchvision("random", seed=1), dec).eval()


def test_adain_output_statistics_equal_the_styles(model, astronaut, chelsea):
    c = to_float(astronaut.resize((64, 64)))
    s = to_float(chelsea.resize((80, 64)))
    with torch.no_grad():
        fc, fs = model.encode(c), model.encode(s)
        sm, ss = A.calc_mean_std(fs)
        t = model.target_features(c, [s], alpha=1.0)
    tm, ts = A.calc_mean_std(t, eps=0.0)  # measure the output plainly; sigma(y) is the port's (with eps)
    assert (tm - sm).abs().max().item() < 1e-4
    # std = sqrt(var + 1e-5) (the port's eps): a channel that is (nearly) constant over the content, e.g. a
    # dead ReLU, has nothing to rescale and keeps a std near sqrt(1e-5). Channels whose content variance
    # dwarfs eps (var > 0.1, i.e. 1e4 x eps) take the style's std exactly
    live = A.calc_mean_std(fc)[1].flatten() > 0.32
    assert live.float().mean() > 0.5
    assert (ts.flatten()[live] - ss.flatten()[live]).abs().max().item() < 1e-4
    # alpha = 0 keeps the content features; weights (1, 0) are the first style alone
    with torch.no_grad():
        torch.testing.assert_close(model.target_features(c, [s], alpha=0.0), fc)
        torch.testing.assert_close(model.target_features(c, [s, c], weights=[1, 0]), t)
    # std is the port's: sqrt(unbiased variance + 1e-5)
    x = torch.randn(2, 3, 5, 4)
    m, sd = A.calc_mean_std(x)
    torch.testing.assert_close(sd.flatten(), (x.reshape(2, 3, -1).var(2, unbiased=True) + 1e-5).sqrt().flatten())


def test_colour_preservation_moves_style_colours_to_the_contents():
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(3, 16, 16, generator=gen) * torch.tensor([0.2, 0.5, 0.1]).view(3, 1, 1)
    tgt = torch.rand(3, 16, 16, generator=gen) * 0.4 + 0.3
    out = A.coral(src, tgt)
    torch.testing.assert_close(out.mean((1, 2)), tgt.mean((1, 2)), atol=1e-3, rtol=0)


def test_released_layout_state_dicts_load(model, tmp_path, astronaut, chelsea):
    full = A.make_encoder()  # the released vgg_normalised.pth holds all 53 modules
    sd = full.state_dict()
    used = {k: v for k, v in
            torch.nn.Sequential(*[m for i in range(4) for m in getattr(model, f"enc_{i + 1}").children()]).state_dict().items()}
    sd.update(used)
    torch.save(sd, tmp_path / "vgg_normalised.pth")
    torch.save(model.decoder.state_dict(), tmp_path / "decoder.pth")
    loaded = A.load_adain(tmp_path / "decoder.pth")
    c, s = to_float(astronaut.resize((32, 32))), to_float(chelsea.resize((32, 32)))
    torch.testing.assert_close(loaded.stylize(c, [s]), model.stylize(c, [s]))
    (tmp_path / "vgg_normalised.pth").unlink()
    with pytest.raises(ModelError, match="adain-train"):
        A.load_adain(tmp_path)
    torch.save({"1.weight": torch.zeros(3)}, tmp_path / "decoder.pth")
    torch.save(sd, tmp_path / "vgg_normalised.pth")
    with pytest.raises(ModelError, match="pytorch-AdaIN layout"):
        A.load_adain(tmp_path / "decoder.pth")


def _folder(root, arrays):
    root.mkdir(parents=True)
    for i, a in enumerate(arrays):
        Image.fromarray(np.ascontiguousarray(a)).convert("RGB").resize((48, 48)).save(root / f"{i}.png")
    return root


def test_short_decoder_training_lowers_loss_and_writes_released_layout(tmp_path):
    from skimage import data

    torch.set_num_threads(1)
    content = _folder(tmp_path / "content", [data.astronaut(), data.coffee(), data.chelsea()])
    style = _folder(tmp_path / "style", [data.brick(), data.gravel()])
    (style / "broken.png").write_bytes(b"nope")
    out = tmp_path / "model"
    r = run_job(A.adain_train_job(content, style, out, encoder="random", iterations=15, batch_size=2, size=32,
                                  lr=1e-4, preview_every=5))
    first, last = np.mean(r.losses[:5]), np.mean(r.losses[-5:])
    assert last < 0.5 * first, (first, last)
    assert any("broken.png" in p for p in r.meta["skipped"])
    m = A.load_adain(out / "decoder.pth")
    assert set(torch.load(out / "decoder.pth", weights_only=True)) == set(A.make_decoder().state_dict())
    y = m.stylize(torch.rand(1, 3, 40, 40), [torch.rand(1, 3, 32, 32)])
    assert y.shape == (1, 3, 40, 40)
