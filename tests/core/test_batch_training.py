"""Training with each batch op through ``Recipe.batch_transform``: a small CNN on sklearn's digits (8x8,
upscaled to 32x32) reaches >= 90% test accuracy. PuzzleMix takes the model being trained, as in the paper."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from augstudio.core.engine.recipe import Recipe


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


@pytest.mark.parametrize("batch", [
    [{"op": "mixup"}],
    [{"op": "cutmix"}],
    [{"op": "puzzlemix"}],
    [{"op": "label_smoothing", "eps": 0.1}],
], ids=lambda b: b[0]["op"])
def test_small_cnn_learns_digits_with_batch_op(digits, batch):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xtr, ytr, xte, yte = digits
    model = _net()
    mix = Recipe.from_dict({"seed": 0, "steps": [], "batch": batch}).batch_transform(10, model=model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _epoch in range(5):
        order = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = order[i:i + 64]
            images, soft = mix(xtr[idx], ytr[idx])
            model.train()
            loss = -(soft * F.log_softmax(model(images), 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"\n{batch[0]['op']}: test accuracy {acc:.3f}")
    assert acc >= 0.90
