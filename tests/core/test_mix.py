"""Mixup, CutMix and label smoothing against their formulas; lambda against Beta(alpha, alpha); the batch
stage's seed path, inputs and messages."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.recipe import Recipe
from augstudio.core.ops import get_batch_op
from augstudio.core.ops.mix import sample_beta


def _batch(n=6, k=4, size=(20, 24), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g), torch.randint(0, k, (n,), generator=g)


def _stage(batch, k=4, seed=0, model=None):
    return Recipe.from_dict({"seed": seed, "steps": [], "batch": batch}).batch_transform(k, model=model)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    lams = [sample_beta(seeding.generator(7, i, 0, "t"), alpha, alpha) for i in range(1500)]
    res = stats.kstest(lams, stats.beta(alpha, alpha).cdf)
    assert res.pvalue > 0.01, res
    # and a wrong alpha is rejected, so the test has teeth
    assert stats.kstest(lams, stats.beta(alpha * 3, alpha * 3).cdf).pvalue < 0.01


def test_mixup_stage_lambda_is_beta_distributed():
    stage = _stage([{"op": "mixup", "alpha": 0.4}])
    x, y = _batch(n=2)
    lams = []
    for _ in range(300):
        stage(x, y)
        lams.append(stage.stage.last_records[0]["params"]["lam"])
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01


def test_mixup_matches_formula():
    x, y = _batch()
    stage = _stage([{"op": "mixup"}])
    out, soft = stage(x, y)
    p = stage.stage.last_records[0]["params"]
    lam, perm = p["lam"], torch.tensor(p["perm"])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(out, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(soft, lam * onehot + (1 - lam) * onehot[perm])
    assert sorted(p["perm"]) == list(range(6))


def test_cutmix_box_and_exact_area_lambda():
    x, y = _batch(size=(20, 24))
    stage = _stage([{"op": "cutmix"}])
    for _ in range(20):
        out, soft = stage(x, y)
        p = stage.stage.last_records[0]["params"]
        y1, y2, x1, x2 = p["box"]
        perm = torch.tensor(p["perm"])
        # box from lambda: sides sqrt(1 - lam) of the image (before clipping at the border)
        rat = math.sqrt(1 - p["lam_drawn"])
        assert y2 - y1 <= int(20 * rat) + 1 and x2 - x1 <= int(24 * rat) + 1
        inside = torch.zeros(20, 24, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        torch.testing.assert_close(out[..., inside], x[perm][..., inside])
        torch.testing.assert_close(out[..., ~inside], x[..., ~inside])
        lam = 1 - inside.float().mean().item()
        assert p["lam"] == pytest.approx(lam)
        onehot = torch.nn.functional.one_hot(y, 4).float()
        torch.testing.assert_close(soft, lam * onehot + (1 - lam) * onehot[perm])


def test_label_smoothing_formula_and_order_with_mixup():
    x, y = _batch()
    out, soft = _stage([{"op": "label_smoothing", "eps": 0.2}])(x, y)
    onehot = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(soft, 0.8 * onehot + 0.2 / 4)
    assert torch.equal(out, x)
    stage = _stage([{"op": "mixup"}, {"op": "label_smoothing", "eps": 0.1}])
    _, soft = stage(x, y)
    p = stage.stage.last_records[0]["params"]
    perm = torch.tensor(p["perm"])
    mixed = p["lam"] * onehot + (1 - p["lam"]) * onehot[perm]
    torch.testing.assert_close(soft, 0.9 * mixed + 0.1 / 4)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))


def test_puzzlemix_labels_follow_the_mask_mean():
    x, y = _batch(size=(32, 32))
    stage = _stage([{"op": "puzzlemix"}])
    out, soft = stage(x, y)
    op_params = stage.stage.last_records[0]["params"]
    op = stage.stage.ops[0][1]
    res = op.run(x, y, op_params)  # the same params again: the same result
    assert not hasattr(op, "last_result"), "the op keeps no per-call state"
    perm = torch.tensor(op_params["perm"])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    r = res.ratio.unsqueeze(1)
    torch.testing.assert_close(soft, r * onehot + (1 - r) * onehot[perm])
    assert op_params["block_num"] in (2, 4, 8, 16)
    torch.testing.assert_close(out, res.mixed)


def test_puzzlemix_block_count_is_uniform_over_2_to_16():
    op = get_batch_op("puzzlemix")()
    counts = {2: 0, 4: 0, 8: 0, 16: 0}
    for i in range(800):
        counts[op.sample(seeding.generator(0, i), 4, (32, 32), 3)["block_num"]] += 1
    assert stats.chisquare(list(counts.values())).pvalue > 0.01


def test_same_seed_same_batches_and_global_rng_untouched():
    x, y = _batch()
    torch.manual_seed(123)
    a = [_stage([{"op": "cutmix"}, {"op": "mixup"}], seed=5) for _ in range(2)]
    state = torch.get_rng_state()
    outs = [[s(x, y) for _ in range(3)] for s in a]
    assert torch.equal(torch.get_rng_state(), state)
    for (xa, ya), (xb, yb) in zip(*outs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(outs[0][0][0], outs[0][1][0])  # fresh randomness on every call
    other = _stage([{"op": "cutmix"}, {"op": "mixup"}], seed=6)(x, y)
    assert not torch.equal(other[0], outs[0][0][0])


def test_inputs_uint8_soft_labels_and_probability():
    x, y = _batch()
    u8 = (x * 255).round().to(torch.uint8)
    out, soft = _stage([{"op": "mixup"}])(u8, torch.nn.functional.one_hot(y, 4).float())
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert soft.shape == (6, 4)
    out, soft = _stage([{"op": "mixup", "p": 0.0}])(x, y)
    assert torch.equal(out, x)
    torch.testing.assert_close(soft, torch.nn.functional.one_hot(y, 4).float())


def test_messages_name_the_problem():
    x, y = _batch()
    with pytest.raises(RecipeError, match="class index out of range 0..2"):
        _stage([{"op": "mixup"}], k=3)(x, y + 3)
    with pytest.raises(RecipeError, match="soft labels have 5 classes, expected 4"):
        _stage([{"op": "mixup"}])(x, torch.ones(6, 5))
    with pytest.raises(RecipeError, match="per-image op"):
        Recipe.from_dict({"batch": [{"op": "hflip"}]})
    with pytest.raises(RecipeError, match="alpha"):
        Recipe.from_dict({"batch": [{"op": "mixup", "alpha": -1}]})
    with pytest.raises(RecipeError, match="N x C x H x W"):
        _stage([{"op": "mixup"}])(x[0], y)


def test_cli_mix_writes_the_pictures(tmp_path, samples_root, capsys):
    import json

    import numpy as np
    from PIL import Image

    from augstudio.cli import main

    a = samples_root / "shapes" / "circle" / "circle_000.jpg"
    b = samples_root / "shapes" / "star" / "star_001.jpg"
    assert main(["mix", "--a", str(a), "--b", str(b), "--method", "mixup", "--lam", "0.3",
                 "--out", str(tmp_path / "m")]) == 0
    info = json.loads((tmp_path / "m" / "mix.json").read_text())
    assert info["weight_a"] == pytest.approx(0.3) and info["weight_b"] == pytest.approx(0.7)
    pa = np.asarray(Image.open(a).convert("RGB"), dtype=float)
    pb = np.asarray(Image.open(b).convert("RGB"), dtype=float)
    mixed = np.asarray(Image.open(tmp_path / "m" / "mixed.png"), dtype=float)
    assert np.abs(mixed - (0.3 * pa + 0.7 * pb)).max() <= 1.0
    assert main(["mix", "--a", str(a), "--b", str(b), "--method", "puzzlemix", "--blocks", "4",
                 "--out", str(tmp_path / "p")]) == 0
    names = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"mixed.png", "mask.png", "saliency_a.png", "saliency_b.png", "transported_a.png",
            "transported_b.png", "mix.json"} <= names
    info = json.loads((tmp_path / "p" / "mix.json").read_text())
    assert info["weight_a"] == pytest.approx(np.mean(info["params"]["block_mask"]))
    capsys.readouterr()
    assert main(["mix", "--a", str(tmp_path / "nope.png"), "--b", str(b), "--out", str(tmp_path / "x")]) == 2
    assert "nope.png" in capsys.readouterr().err
