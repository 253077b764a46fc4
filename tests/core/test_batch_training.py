"""Training with each batch op through ``Recipe.batch_transform``: a small CNN on sklearn's digits (8x8,
upscaled to 32x32), 5 epochs, three seeds, compared with the same training without a batch stage.

Accuracy alone cannot tell a broken op: 30% of the labels shuffled still reaches ~0.94. The test also holds
the median test NLL to the baseline's + 0.3 (the real ops stay within ~0.22 of it: softer targets, softer
predictions; shuffled labels land ~0.45 above it), and a sabotaged op (labels shuffled within 30% of every
batch) must fail the same check. PuzzleMix takes the model being trained, as in the paper."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from augstudio.core.engine.recipe import Recipe

SEEDS = (0, 1, 2)
NLL_MARGIN = 0.3


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def _shuffle_30pct(soft, gen):
    """The sabotage: 30% of the batch's soft labels permuted among themselves."""
    k = int(0.3 * len(soft))
    sel = torch.randperm(len(soft), generator=gen)[:k]
    out = soft.clone()
    out[sel] = soft[sel][torch.randperm(k, generator=gen)]
    return out


def _train(digits, batch, seed, sabotage=False):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits
    model = _net()
    mix = Recipe.from_dict({"seed": seed, "steps": [], "batch": batch}).batch_transform(10, model=model) \
        if batch else None
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed + 1)
    g_sab = torch.Generator().manual_seed(seed + 2)
    for _epoch in range(5):
        order = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = order[i:i + 64]
            if mix is None:
                images, soft = xtr[idx], F.one_hot(ytr[idx], 10).float()
            else:
                images, soft = mix(xtr[idx], ytr[idx], key=(seed, _epoch, i))
            if sabotage:
                soft = _shuffle_30pct(soft, g_sab)
            model.train()
            loss = -(soft * F.log_softmax(model(images), 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        p = F.softmax(model(xte), 1)
    acc = (p.argmax(1) == yte).float().mean().item()
    nll = -torch.log(p[torch.arange(len(yte)), yte].clamp_min(1e-12)).mean().item()
    return acc, nll


def _medians(runs):
    return statistics.median(a for a, _ in runs), statistics.median(n for _, n in runs)


def _verdict(runs, baseline) -> tuple[bool, str]:
    acc, nll = _medians(runs)
    b_acc, b_nll = _medians(baseline)
    ok = acc >= 0.90 and acc >= b_acc - 0.05 and nll <= b_nll + NLL_MARGIN
    return ok, (f"accuracy {acc:.3f} (baseline {b_acc:.3f}), NLL {nll:.3f} (baseline {b_nll:.3f}, "
                f"allowed {b_nll + NLL_MARGIN:.3f})")


@pytest.fixture(scope="module")
def baseline(digits):
    return [_train(digits, [], s) for s in SEEDS]


@pytest.mark.parametrize("batch", [
    [{"op": "mixup"}],
    [{"op": "cutmix"}],
    [{"op": "puzzlemix"}],
    [{"op": "label_smoothing", "eps": 0.1}],
], ids=lambda b: b[0]["op"])
def test_small_cnn_learns_digits_with_batch_op(digits, baseline, batch):
    ok, text = _verdict([_train(digits, batch, s) for s in SEEDS], baseline)
    print(f"\n{batch[0]['op']}: {text}")
    assert ok, text


def test_a_sabotaged_op_fails_the_same_check(digits, baseline):
    ok, text = _verdict([_train(digits, [{"op": "mixup"}], s, sabotage=True) for s in SEEDS], baseline)
    print(f"\nmixup with 30% of the labels shuffled: {text}")
    assert not ok, f"the check cannot tell shuffled labels: {text}"
