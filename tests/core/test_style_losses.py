"""The Gatys losses against the course's formulas, computed by hand on small tensors; the feature extractors."""

from __future__ import annotations

import itertools
import urllib.error

import pytest
import torch

from augstudio.core.base.errors import ModelError
from augstudio.core.methods.style import features as feat
from augstudio.core.methods.style.losses import (
    content_loss,
    fused_style_loss,
    gram,
    layer_style_loss,
    scaled_gram,
    style_loss,
    style_targets,
    total_loss,
)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gram_is_f_f_transpose_by_hand():
    f = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])  # N=2 filters, M=3 positions
    assert gram(f).tolist() == [[5.0, -2.0], [-2.0, 10.0]]
    x = _rand(4, 3, 5)  # C x H x W is flattened to N x M
    g = gram(x)
    n = x.reshape(4, -1)
    for i, j in itertools.product(range(4), range(4)):
        assert g[i, j].item() == pytest.approx(sum(n[i, k].item() * n[j, k].item() for k in range(15)))


def test_layer_style_loss_formula():
    f, fh = _rand(3, 7, seed=1), _rand(3, 7, seed=2)
    n, m = 3, 7
    g, gh = gram(f), gram(fh)
    by_hand = sum((g[i, j].item() - gh[i, j].item()) ** 2 for i in range(n) for j in range(n)) / (4 * n**2 * m**2)
    assert layer_style_loss(g, gh, n, m).item() == pytest.approx(by_hand, rel=1e-12)


def test_gradient_of_layer_style_loss_is_gatys_expression():
    # dE/dF = (F^T (G - Ghat))^T / (N^2 M^2)  (Gatys et al. 2016, eq. 6, before the ReLU mask)
    f = _rand(3, 7, seed=3).requires_grad_(True)
    fh = _rand(3, 7, seed=4)
    n, m = 3, 7
    e = layer_style_loss(gram(f), gram(fh), n, m)
    e.backward()
    expected = ((gram(f) - gram(fh)) @ f).detach() / (n**2 * m**2)
    torch.testing.assert_close(f.grad, expected)


def test_content_loss_and_its_gradient():
    f, p = _rand(2, 5, seed=5).requires_grad_(True), _rand(2, 5, seed=6)
    lc = content_loss(f, p)
    assert lc.item() == pytest.approx(0.5 * sum((a - b) ** 2 for a, b in zip(f.flatten().tolist(), p.flatten().tolist())))
    lc.backward()
    torch.testing.assert_close(f.grad, (f - p).detach())  # dL/dF = F - P


def test_style_loss_weights_and_total():
    feats = {"a": _rand(1, 2, 3, 3, seed=7), "b": _rand(1, 4, 2, 2, seed=8)}
    tgt = {"a": _rand(1, 2, 3, 3, seed=9), "b": _rand(1, 4, 2, 2, seed=10)}
    w = {"a": 0.25, "b": 2.0}
    ea = layer_style_loss(gram(feats["a"]), gram(tgt["a"]), 2, 9)
    eb = layer_style_loss(gram(feats["b"]), gram(tgt["b"]), 4, 4)
    ls = style_loss(feats, tgt, w)
    assert ls.item() == pytest.approx((0.25 * ea + 2.0 * eb).item())
    assert total_loss(3.0, ls, alpha=0.5, beta=10.0).item() == pytest.approx(1.5 + 10 * ls.item())
    # the fused form the optimisers use gives the same number
    assert fused_style_loss(feats, style_targets(tgt), w).item() == pytest.approx(ls.item(), rel=1e-10)
    # and a batch of two identical images has the same (mean) loss
    batch = {k: v.repeat(2, 1, 1, 1) for k, v in feats.items()}
    assert fused_style_loss(batch, style_targets(tgt), w).item() == pytest.approx(ls.item(), rel=1e-10)
    assert scaled_gram(feats["a"]).shape == (1, 2, 2) and scaled_gram(feats["a"][0]).shape == (2, 2)


def test_fft_convolution_equals_direct_valid_convolution():
    x, k = torch.rand(2, 3, 40, 33), torch.randn(5, 3, 23, 23)
    direct = torch.nn.functional.conv2d(x, k)
    via_fft = feat.fft_conv_valid(torch.fft.rfft2(x), k, (40, 33))
    torch.testing.assert_close(via_fft, direct, atol=2e-4, rtol=1e-4)


def test_fft_convolution_gradients_equal_direct_convolution_cached_or_recomputed():
    """The texture optimiser's speed paths (cached kernel spectra; spectra recomputed in the backward at
    large sizes) and the one-product Gram backward give autograd's gradients of the textbook forms."""
    x = _rand(1, 3, 40, 33, seed=1).requires_grad_(True)
    k, g = _rand(6, 3, 11, 11, seed=2), _rand(1, 6, 30, 23, seed=3)
    (torch.nn.functional.conv2d(x, k) * g).sum().backward()
    want, x.grad = x.grad.clone(), None
    spec = torch.fft.rfft2(k, s=(40, 33)).conj()
    for k_spec in (None, spec):  # None: _RecomputedSpectralCorrelation
        (feat.fft_conv_valid(torch.fft.rfft2(x), k, (40, 33), k_spec) * g).sum().backward()
        torch.testing.assert_close(x.grad, want, atol=1e-10, rtol=1e-10)
        x.grad = None
    f = _rand(1, 4, 5, 6, seed=4).requires_grad_(True)
    t = _rand(4, 4, seed=5)
    ((scaled_gram(f)[0] - t) ** 2).sum().backward()
    m = f.detach().reshape(4, 30).requires_grad_(True)
    (((m @ m.t()) / (2 * 4 * 30) - t) ** 2).sum().backward()
    torch.testing.assert_close(f.grad.reshape(4, 30), m.grad, atol=1e-12, rtol=1e-10)


def test_random_multiscale_features_are_seeded_and_skip_scales_larger_than_the_image():
    a, b, c = (feat.RandomMultiScaleFeatures(seed=s) for s in (1, 1, 2))
    assert a.layers == tuple(f"scale{s}" for s in (3, 5, 7, 11, 15, 23, 37, 55))
    assert a.w55.shape == (128, 3, 55, 55)
    assert torch.equal(a.w7, b.w7) and not torch.equal(a.w7, c.w7)
    out = a(torch.rand(1, 3, 40, 40))
    assert set(out) == {"scale3", "scale5", "scale7", "scale11", "scale15", "scale23", "scale37"}
    assert out["scale37"].shape == (1, 128, 4, 4) and (out["scale3"] >= 0).all()  # valid conv, ReLU


def test_vgg19_layer_names_match_torchvision_modules():
    from torchvision.models.vgg import cfgs, make_layers  # what torchvision's vgg19() is made of

    with torch.device("meta"):  # no init: only the module types and indices matter
        mods = list(make_layers(cfgs["E"]).children())
    assert feat.VGG19_LAYERS["relu4_1"] == 20 and feat.VGG19_LAYERS["relu5_1"] == 29
    for i in feat.VGG19_LAYERS.values():
        assert isinstance(mods[i], torch.nn.ReLU)
        assert isinstance(mods[i - 1], torch.nn.Conv2d)
    convs_before = sum(isinstance(m, torch.nn.Conv2d) for m in mods[:feat.VGG19_LAYERS["relu3_4"]])
    assert convs_before == 8  # relu3_4 follows the 8th conv


def test_vgg_weights_offline_message_and_user_file(monkeypatch, tmp_path):
    from torchvision.models import _api

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(_api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ModelError) as e:
        feat.VGGFeatures(weights="imagenet")
    name, cache = feat.imagenet_weights_help()
    assert name == "vgg19-dcbb9e9d.pth" and name in str(e.value) and cache in str(e.value)

    net = feat.VGGFeatures(layers=("relu1_1", "relu2_1"), weights="random", seed=3)
    path = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in net.body.state_dict().items()} | {"classifier.0.bias": torch.zeros(1)},
               path)
    with pytest.raises(ModelError, match="does not fit"):
        feat.VGGFeatures(layers=("relu1_1",), weights=str(path))  # only the first 2 blocks were saved
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pth"):
        feat.VGGFeatures(weights=str(bad))
    with pytest.raises(ModelError, match="does not exist"):
        feat.VGGFeatures(weights=str(tmp_path / "missing.pth"))
