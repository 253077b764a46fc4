"""Batch mixing on par with timm's ``Mixup``: for the same lambda and pairing, images and soft labels equal
timm's for mixup, cutmix (its box and lambda correction) and label smoothing, in batch, pair and elem modes;
``one_of`` under ``batch:`` gives timm's "mixup or cutmix, switch probability"; ``collate_fn`` mixes in the
DataLoader workers; the batch stage says what is wrong with odd inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import augstudio
from augstudio.core.base.errors import RecipeError
from augstudio.core.ops.registry import get_batch_op

mixup_mod = pytest.importorskip("timm.data.mixup", reason="timm is a test dependency")

N, K = 6, 5


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, 3, 24, 20, generator=g), torch.randint(0, K, (N,), generator=g)


def _timm(mode, use_cutmix, lam, smoothing, x, y, monkeypatch, boxes=None):
    """timm's Mixup with its random draws replaced by ours (the same lambdas and boxes)."""
    mix = mixup_mod.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, label_smoothing=smoothing, num_classes=K)
    if mode == "batch":
        monkeypatch.setattr(mix, "_params_per_batch", lambda: (lam, use_cutmix))
    else:
        m = len(x) // 2 if mode == "pair" else len(x)
        monkeypatch.setattr(mix, "_params_per_elem",
                            lambda n: (np.array(lam[:m], dtype=np.float32), np.array([use_cutmix] * m)))
    if boxes is not None:
        it = iter(boxes)
        monkeypatch.setattr(mixup_mod, "cutmix_bbox_and_lam", lambda shape, lam, **kw: _corrected(next(it), shape))
    xt = x.clone()
    out = mix(xt, y.clone())  # timm mixes x in place; it returns (x, target), older versions the target only
    return out if isinstance(out, tuple) else (xt, out)


def _corrected(box, shape):
    h, w = shape[-2:]
    return tuple(box), 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(h * w)


def _ours(batch_steps, x, y, params_override):
    recipe = augstudio.load_recipe({"steps": [], "batch": batch_steps})
    stage = recipe.batch_transform(K)
    ops = stage.stage.ops

    real = [op.sample for _, op, _ in ops]
    try:
        for (_, op, _), p in zip(ops, params_override):
            if p is not None:
                op.sample = (lambda pp: (lambda *a, **k: dict(pp)))(p)
        return stage(x.clone(), y.clone(), key=0)
    finally:
        for (_, op, _), fn in zip(ops, real):
            op.sample = fn


def test_mixup_batch_mode_with_label_smoothing_equals_timm(batch, monkeypatch):
    x, y = batch
    flip = list(range(N - 1, -1, -1))
    xt, yt = _timm("batch", False, 0.3, 0.1, x, y, monkeypatch)
    xo, yo = _ours([{"op": "mixup"}, {"op": "label_smoothing", "eps": 0.1}], x, y, [{"lam": 0.3, "perm": flip}, None])
    assert torch.allclose(xo, xt, atol=1e-6) and torch.allclose(yo, yt, atol=1e-6)


def test_cutmix_box_and_lambda_correction_equal_timm(batch, monkeypatch):
    x, y = batch
    flip = list(range(N - 1, -1, -1))
    rng = np.random.RandomState(3)
    for lam in (0.2, 0.55, 0.9):
        np_state = rng.get_state()
        np.random.set_state(np_state)
        box_t = mixup_mod.rand_bbox(x.shape, lam)  # timm's box from its centre draw
        np.random.set_state(np_state)
        cy, cx = np.random.randint(0, 24), np.random.randint(0, 20)
        from augstudio.core.ops.mix import cutmix_box

        ours = cutmix_box(lam, (24, 20), int(cy), int(cx))
        assert ours == [int(v) for v in box_t], (lam, ours, box_t)
        xt, yt = _timm("batch", True, lam, 0.0, x, y, monkeypatch, boxes=[ours])
        params = {"box": ours, "lam": _corrected(ours, x.shape)[1], "perm": flip}
        xo, yo = _ours([{"op": "cutmix"}], x, y, [params])
        assert torch.equal(xo, xt) and torch.allclose(yo, yt, atol=1e-6)
        rng.randint(0, 100)


@pytest.mark.parametrize("mode", ["elem", "pair"])
def test_per_image_and_per_pair_mixup_equal_timm(batch, monkeypatch, mode):
    x, y = batch
    lams = [0.1, 0.35, 0.5, 0.62, 0.8, 0.97]
    per = lams if mode == "elem" else lams[:N // 2] + lams[:N // 2][::-1]
    xt, yt = _timm(mode, False, lams, 0.0, x, y, monkeypatch)
    xo, yo = _ours([{"op": "mixup", "mode": mode}], x, y, [{"lam": per, "perm": list(range(N - 1, -1, -1))}])
    assert torch.allclose(xo, xt, atol=1e-6) and torch.allclose(yo, yt, atol=1e-6)


def test_our_pair_mode_draws_timms_pairing_and_symmetric_lambdas():
    op = get_batch_op("mixup")(mode="pair")
    p = op.sample(torch.Generator().manual_seed(0), 6, (8, 8), 3)
    assert p["perm"] == [5, 4, 3, 2, 1, 0] and p["lam"] == p["lam"][::-1]
    c = get_batch_op("cutmix")(mode="elem").sample(torch.Generator().manual_seed(0), 4, (8, 8), 3)
    assert len(c["box"]) == 4 and len(c["lam"]) == 4


def test_one_of_picks_mixup_or_cutmix_by_switch_probability(batch):
    x, y = batch
    recipe = augstudio.load_recipe({"steps": [], "batch": [
        {"op": "one_of", "steps": [{"op": "mixup"}, {"op": "cutmix"}], "weights": [0.3, 0.7]}]})
    stage = recipe.batch_transform(K)
    picks = []
    for key in range(300):
        stage(x, y, key=key)
        picks.append(stage.stage.last_records[0]["params"]["choice"])
    share = float(np.mean(picks))
    assert 0.62 < share < 0.78, share  # cutmix about 70% of the batches
    per_image = augstudio.load_recipe({"steps": [], "batch": [
        {"op": "one_of", "steps": [{"op": "mixup", "mode": "elem"}, {"op": "cutmix", "mode": "elem"}],
         "per": "image"}]}).batch_transform(K)
    xo, yo = per_image(x, y, key=1)
    rec = per_image.stage.last_records[0]["params"]
    assert len(rec["choice"]) == N and torch.allclose(yo.sum(1), torch.ones(N))
    with pytest.raises(RecipeError, match="2 weights for 1 steps"):
        augstudio.load_recipe({"batch": [{"op": "one_of", "steps": [{"op": "mixup"}], "weights": [1, 2]}]})
    # the per-image one_of is a different op: its steps are per-image ones
    assert augstudio.load_recipe({"steps": [{"op": "one_of", "steps": [{"op": "hflip"}]}]}).steps[0].copy().op == "one_of"


def test_collate_fn_mixes_in_dataloader_workers(photo_folder):
    recipe = augstudio.load_recipe({"steps": [{"op": "random_resized_crop", "size": 32}, {"op": "to_tensor"}],
                                    "batch": [{"op": "mixup"}, {"op": "label_smoothing"}]})
    ds = recipe.dataset(photo_folder, batch_stage_elsewhere=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=recipe.collate_fn(2))
    images, soft = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and soft.shape == (4, 2)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and float(soft.min()) > 0  # smoothed and mixed
    with pytest.raises(RecipeError, match="names a model"):
        augstudio.load_recipe({"batch": [{"op": "puzzlemix", "model": "resnet18"}]}).collate_fn(2)


def test_batch_transform_says_what_is_wrong(batch):
    x, y = batch
    mix = augstudio.load_recipe({"steps": [], "batch": [{"op": "mixup"}]}).batch_transform(K)
    with pytest.raises(RecipeError, match="channels-last.*permute\\(0, 3, 1, 2\\)"):
        mix(x.permute(0, 2, 3, 1), y)
    from PIL import Image

    pils = [Image.new("RGB", (20, 24), (i * 40, 0, 0)) for i in range(N)]
    out, soft = mix(pils, y, key=0)  # a list of PIL images is a batch too
    assert out.shape == (N, 3, 24, 20) and out.dtype == torch.float32
    with pytest.raises(RecipeError, match="share one size"):
        mix([Image.new("RGB", (20, 24)), Image.new("RGB", (10, 10))], y[:2])
    with torch.inference_mode():  # no gradients needed: fine
        mix(x, y, key=1)
    from augstudio.core.models.networks import ProbeNet

    net = ProbeNet(3, width=4, depth=2, seed=0)
    pm = augstudio.load_recipe({"steps": [], "batch": [{"op": "puzzlemix"}]}).batch_transform(K, model=net)
    with pytest.raises(RecipeError, match="model gives 3 class scores but the labels have 5"):
        pm(x, y, key=0)
    with torch.inference_mode(), pytest.raises(RecipeError, match="needs input gradients.*inference_mode"):
        augstudio.load_recipe({"steps": [], "batch": [{"op": "puzzlemix"}]}).batch_transform(3, model=net)(
            x, y % 3, key=0)
