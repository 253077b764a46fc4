"""Training with each batch op through the public ``Recipe.batch_transform``: a small CNN on sklearn's
``load_digits`` (8x8 upscaled to 32x32; 1400 training and 397 test images), 5 epochs, Adam, batch 64, against
the same training without a batch stage and against a sabotaged op (mixup with 30% of every batch's labels
shuffled). The training is the one of ``tests/core/test_batch_training.py``; the figure reports what the
test checks.
"""

from __future__ import annotations

import statistics

from . import figure, md_table, med_range

SEEDS = (0, 1, 2)
NLL_MARGIN = 0.3  # the test's check: NLL within baseline + 0.3, accuracy >= 0.90 and >= baseline - 0.05
ARMS = {
    "no augmentation (baseline)": ([], False),
    "mixup": ([{"op": "mixup"}], False),
    "cutmix": ([{"op": "cutmix"}], False),
    "puzzlemix": ([{"op": "puzzlemix"}], False),
    "label_smoothing (eps 0.1)": ([{"op": "label_smoothing", "eps": 0.1}], False),
    "control: mixup, 30% of labels shuffled": ([{"op": "mixup"}], True),
}


def digits():
    import torch
    from sklearn.datasets import load_digits
    from torch.nn import functional as F

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _net():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def _shuffle_30pct(soft, gen):
    import torch

    k = int(0.3 * len(soft))
    sel = torch.randperm(len(soft), generator=gen)[:k]
    out = soft.clone()
    out[sel] = soft[sel][torch.randperm(k, generator=gen)]
    return out


def train(data, batch, seed, sabotage=False) -> tuple[float, float]:
    """(test accuracy, test NLL) of one training run."""
    import torch
    from torch.nn import functional as F

    import augstudio

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = data
    model = _net()
    mix = (augstudio.Recipe.from_dict({"seed": seed, "steps": [], "batch": batch}).batch_transform(10, model=model)
           if batch else None)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed + 1)
    g_sab = torch.Generator().manual_seed(seed + 2)
    for epoch in range(5):
        order = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = order[i:i + 64]
            if mix is None:
                images, soft = xtr[idx], F.one_hot(ytr[idx], 10).float()
            else:
                images, soft = mix(xtr[idx], ytr[idx], key=(seed, epoch, i))
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


@figure("batch_training", "a small CNN on load_digits with each batch op vs no augmentation and a sabotaged op "
        "(3 seeds)", minutes=4)
def batch_training(ctx) -> str:
    data = digits()
    runs = {}
    for name, (batch, sabotage) in ARMS.items():
        runs[name] = [train(data, batch, s, sabotage) for s in SEEDS]
        ctx.log(f"{name}: " + ", ".join(f"{a:.3f}/{n:.3f}" for a, n in runs[name]))
    base = runs["no augmentation (baseline)"]
    b_acc, b_nll = statistics.median(a for a, _ in base), statistics.median(n for _, n in base)
    rows = []
    for name, r in runs.items():
        acc, nll = statistics.median(a for a, _ in r), statistics.median(n for _, n in r)
        if r is base:
            verdict = "baseline"
        else:
            ok = acc >= 0.90 and acc >= b_acc - 0.05 and nll <= b_nll + NLL_MARGIN
            verdict = "passes" if ok else "**fails**"
        rows.append([name, med_range([a for a, _ in r], "{:.1%}"), med_range([n for _, n in r], "{:.3f}"),
                     f"{nll - b_nll:+.3f}" if r is not base else "—", verdict])
    return (f"A small CNN (2 conv layers) on `load_digits` (1400 training, {len(data[3])} test images, 32x32), 5 "
            f"epochs, trained the same way with each batch stage from `Recipe.batch_transform`; test accuracy and "
            f"NLL, median over seeds {', '.join(map(str, SEEDS))} (range). The test's check "
            f"(`tests/core/test_batch_training.py`): accuracy >= 90% and >= the baseline's - 5 points, NLL <= "
            f"the baseline's + {NLL_MARGIN}; accuracy alone does not catch the shuffled labels, NLL does.\n\n"
            + md_table(["batch stage", "test accuracy", "test NLL", "NLL vs baseline", "check"], rows, "lrrrl"))
