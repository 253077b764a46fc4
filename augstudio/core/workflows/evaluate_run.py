"""One training run of ``evaluate``: one arm (no augmentation or a recipe) with one seed, start to end.

Both engines call it: the local engine in this process (``train_run``, a generator yielding after every
epoch, so the job can show curves as they grow), the Ray engine once per (arm, seed) task
(``RunWorker.process``). Everything a run needs is in the ``Experiment`` (plain data: the decoded
pictures, the split, the input converter, the training settings), so a run is a pure function of
(experiment, arm, seed) and gives the same numbers wherever it runs with the same device and thread count.
"""

from __future__ import annotations

import copy as _copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augstudio.core.base import seeding
from augstudio.core.base.device import deterministic as deterministic_on
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.base.jobs import CancelToken
from augstudio.core.engine.training import (  # AugMix's second view (copy index) and JS term
    JSD_COPY_OFFSET,
    jsd_loss,
)
from augstudio.core.io.images import picture_to_pil, read_image
from augstudio.core.models.networks import build_model, init_weights

from . import metrics


class Pictures:
    """Decoded pictures by index: kept in memory up to ``budget`` bytes, read again from disk beyond that
    (so a large folder does not need its decoded size in RAM)."""

    def __init__(self, root, budget: int):
        self.root = Path(root)
        self.budget = budget
        self.used = 0
        self.paths: list[str] = []
        self.cache: list = []

    def add(self, path: str, pic) -> None:
        n = pic.pixels.numel()
        keep = self.used + n <= self.budget
        self.used += n if keep else 0
        self.paths.append(path)
        self.cache.append(pic if keep else None)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        pic = self.cache[i]
        if pic is None:
            pic = read_image(self.root / self.paths[i])
        return pic


class Inputs:
    """Turns pictures into the float ``C x H x W`` tensors (0..1) the model eats, all at one size.

    ``onehot``: categorical datasets with the probe (palette index k -> channel k);
    ``rgb``: everything else (gray repeated, alpha dropped, categorical coloured by its palette)."""

    def __init__(self, mode: str, size: tuple[int, int], num_categories: int = 0):
        self.mode = mode
        self.size = size
        self.num_categories = num_categories

    @property
    def channels(self) -> int:
        return self.num_categories if self.mode == "onehot" else 3

    def __call__(self, pic):
        x = pic.pixels
        if self.mode == "onehot":
            idx = x[0].long().clamp(max=self.num_categories - 1)
            t = F.one_hot(idx, self.num_categories).permute(2, 0, 1).float()
            if tuple(t.shape[-2:]) != self.size:
                t = F.interpolate(t[None], size=self.size, mode="nearest")[0]
            return t
        if pic.kind == "categorical":
            arr = torch.from_numpy(np.asarray(picture_to_pil(pic).convert("RGB")).copy())
            x = arr.permute(2, 0, 1)
        elif x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        elif x.shape[0] == 4:
            x = x[:3]
        t = x.float() / 255.0
        if tuple(t.shape[-2:]) != self.size:
            t = F.interpolate(t[None], size=self.size, mode="bilinear", antialias=True, align_corners=False)[0]
        return t.clamp_(0, 1)


def _batch_key(seed: int, epoch: int, start: int) -> tuple:
    """The batch stage's key for one batch: (seed, epoch, first index), so a run is reproducible in any process
    (without a key, ``Recipe.batch_transform`` draws from ``torch.initial_seed()`` and a call counter)."""
    return ("evaluate", seed, epoch, start)


def _jsd_weight(recipe) -> float | None:
    """AugMix's consistency-loss weight when an enabled augmix step asks for it (``jsd: true``), else None."""
    for s in recipe.steps:
        if s.enabled and s.op == "augmix" and s.values.get("jsd"):
            return float(s.values.get("jsd_weight", 12.0))
    return None


def _smoothing_only(batch_steps) -> float | None:
    """The label-smoothing amount when the batch stage holds only label smoothing (the fallback used when
    the batch-stage module is not available)."""
    eps = 0.0
    for s in batch_steps:
        if not s.enabled:
            continue
        if s.op != "label_smoothing":
            return None
        for key in ("smoothing", "epsilon", "eps", "alpha", "amount"):
            if key in s.values:
                eps = float(s.values[key])
                break
    return eps


@dataclass
class Experiment:
    """What every run of one evaluation shares. ``val_x`` / ``val_y`` stay on the CPU (a run moves them)."""

    arms: list  # (name, Recipe); the first is no augmentation
    pics: Pictures
    labels: list
    paths: list
    train_idx: list
    inputs: Inputs
    norm: tuple
    num_classes: int
    categorical: bool
    val_x: torch.Tensor
    val_y: torch.Tensor
    model: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    device: str = "cpu"
    deterministic: bool = True
    threads: int | None = None
    _plain: dict = field(default_factory=dict, repr=False)

    def plain_train(self) -> torch.Tensor:
        """The no-augmentation training inputs, made once per process."""
        if "x" not in self._plain:
            self._plain["x"] = torch.stack([self.inputs(self.pics[i]) for i in self.train_idx])
        return self._plain["x"]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_plain"] = {}  # made again where it is used
        return state


def train_run(exp: Experiment, arm: int, seed: int, token: CancelToken | None = None):
    """Train arm ``arm`` with ``seed``: yields ``{"epoch", "curves"}`` after every epoch and returns
    ``{"run": ..., "problems": [...]}`` (the run's record in results.json, the items it had to skip)."""
    name, rec = exp.arms[arm]
    dev = resolve_device(exp.device)
    labels, paths, train_idx, inputs = exp.labels, exp.paths, exp.train_idx, exp.inputs
    val_x, val_y = exp.val_x.to(dev), exp.val_y.to(dev)
    num_classes, batch_size, epochs = exp.num_classes, exp.batch_size, exp.epochs
    problems: list[dict] = []
    rec_s = rec.copy()
    rec_s.seed = seeding.derive_seed(rec.seed, "evaluate", seed)
    pipe = rec_s.pipeline() if rec_s.steps else None
    net = build_model(exp.model, inputs.channels, num_classes, *exp.norm)
    init_weights(net, seeding.generator(seed, "evaluate", 0, "init"))
    net.to(dev)
    batch_tf, smoothing = None, 0.0
    if any(s.enabled for s in rec_s.batch):
        if exp.categorical:
            raise RecipeError(f"recipe '{name}': its batch steps ({', '.join(s.op for s in rec_s.batch)}) "
                              "mix images, and categorical (palette) images cannot be mixed: their "
                              "values are category labels. Remove the batch steps for this dataset.")
        try:
            batch_tf = rec_s.batch_transform(num_classes, model=net, device=dev)
        except ImportError:
            smoothing = _smoothing_only(rec_s.batch)
            if smoothing is None:
                raise RecipeError(f"recipe '{name}': its batch stage needs augstudio's batch-stage "
                                  "module, which is not installed in this version") from None
    jsd = _jsd_weight(rec_s)
    if jsd is not None and (batch_tf is not None or smoothing):
        raise RecipeError(f"recipe '{name}': AugMix's Jensen-Shannon consistency (jsd: true) cannot be "
                          "combined with a batch stage here; set jsd: false or remove the batch steps")
    plain_train = exp.plain_train() if (jsd is not None or pipe is None) else None
    opt = torch.optim.AdamW(net.parameters(), lr=exp.lr, weight_decay=exp.weight_decay)
    # one cycle (warm up, then anneal to ~0): short runs end at a settled minimum
    steps = epochs * max(1, -(-len(train_idx) // batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(one_cycle, steps=steps))
    curves = {"epoch": [], "train_loss": [], "train_accuracy": [], "val_accuracy": [], "val_nll": []}
    skipped: set[str] = set()
    for epoch in range(epochs):
        if token is not None:
            token.check(f"seed {seed}, {name}, epoch {epoch + 1}")
        # the same order for every arm of this seed
        g_order = seeding.generator(seed, "evaluate", epoch, "order")
        order = torch.randperm(len(train_idx), generator=g_order, device=g_order.device)
        net.train()
        tot_loss = tot_correct = tot_n = 0.0
        for b0 in range(0, len(order), batch_size):
            bidx = order[b0:b0 + batch_size].tolist()
            if pipe is None:
                xs = plain_train[bidx]
                ys = [labels[train_idx[j]] for j in bidx]
            else:
                xl, ys, views, keep = [], [], [], []
                for j in bidx:
                    i = train_idx[j]
                    try:
                        out, _ = pipe.run(exp.pics[i], rec_s.seed, paths[i], epoch)
                        if jsd is not None:  # a second, independent view of the same image
                            out2, _ = pipe.run(exp.pics[i], rec_s.seed, paths[i], epoch + JSD_COPY_OFFSET)
                            views.append(inputs(out2))
                    except AugstudioError as e:
                        if paths[i] not in skipped:
                            skipped.add(paths[i])
                            problems.append({"path": paths[i], "arm": name, "reason": str(e)})
                        continue
                    xl.append(inputs(out))
                    ys.append(labels[i])
                    keep.append(j)
                if not xl:
                    continue
                xs = torch.stack(xl)
                if jsd is not None:  # [clean; view 1; view 2], the loss on the clean images
                    xs = torch.cat([plain_train[keep], xs, torch.stack(views)])
            if len(ys) < 2 and any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()):
                continue  # batch norm cannot train on one sample
            xs = xs.to(dev)
            y = torch.tensor(ys, device=dev)
            if batch_tf is not None:
                xs, soft = batch_tf(xs, y, key=_batch_key(seed, epoch, b0))
                soft = soft.to(dev).float()
            else:
                soft = torch.nn.functional.one_hot(y, num_classes).float()
                if smoothing:
                    soft = soft * (1 - smoothing) + smoothing / num_classes
            with torch.enable_grad():
                logits = net(xs.float())
                if jsd is not None and pipe is not None:
                    parts = logits.split(len(ys))
                    logits = parts[0]
                    loss = -(soft * torch.log_softmax(logits, 1)).sum(1).mean() + jsd_loss(*parts, weight=jsd)
                else:
                    loss = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            tot_loss += float(loss.detach()) * len(ys)
            tot_correct += float((logits.argmax(1) == y).sum())
            tot_n += len(ys)
        probs = _predict(net, val_x)
        curves["epoch"].append(epoch + 1)
        curves["train_loss"].append(tot_loss / tot_n if tot_n else float("nan"))
        curves["train_accuracy"].append(tot_correct / tot_n if tot_n else float("nan"))
        curves["val_accuracy"].append(metrics.accuracy(probs, val_y.cpu()))
        curves["val_nll"].append(metrics.nll(probs, val_y.cpu()))
        yield {"epoch": epoch + 1, "curves": _copy.deepcopy(curves)}
    m = metrics.summary(probs, val_y.cpu())
    return {"run": {"seed": seed, "metrics": m, "curves": curves, "probs": probs.tolist(),
                    "skipped_items": sorted(skipped)}, "problems": problems}


class RunWorker:
    """One (seed, arm) run per ``process`` call, for the Ray engine: made once per worker process."""

    def __init__(self, exp: Experiment):
        self.exp = exp

    def process(self, unit: tuple) -> dict:
        seed, arm = unit
        exp = self.exp
        before = torch.get_num_threads()
        if exp.threads:
            torch.set_num_threads(exp.threads)
        try:
            with deterministic_on(resolve_device(exp.device), exp.deterministic):
                gen = train_run(exp, arm, seed)
                while True:
                    try:
                        next(gen)
                    except StopIteration as stop:
                        return {"seed": seed, "arm": arm, **stop.value}
        finally:
            torch.set_num_threads(before)


def one_cycle(step: int, steps: int, warmup: float = 0.25) -> float:
    """The learning-rate factor at ``step`` of ``steps``: linear warm-up from 0.1 over the first quarter,
    then a cosine down to 0 (a one-cycle schedule; any number of steps, even one)."""
    w = max(1, round(warmup * steps))
    if step < w:
        return 0.1 + 0.9 * step / w
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, steps - w))))


def _channel_stats(tensors: list) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training images (0..1), for the model's input standardisation."""
    x = torch.stack(tensors).double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _predict(net, x, batch: int = 256):
    net.eval()
    out = []
    with torch.no_grad():
        for b0 in range(0, len(x), batch):
            out.append(torch.softmax(net(x[b0:b0 + batch].float()).double(), 1).cpu())
    return torch.cat(out)


__all__ = ["Experiment", "Pictures", "Inputs", "train_run", "RunWorker", "one_cycle"]
