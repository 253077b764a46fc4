""""Does this recipe help?": train the same model with and without each recipe and compare on an untouched
validation set.

``evaluate_job(data, recipes, ...)`` is a job (a generator yielding ``Progress``, returning the result dict):

1. scan the labelled dataset folder and decode every image once (bad files are skipped and reported);
2. a stratified train / validation split fixed by ``split_seed`` (the same for every arm and every seed);
3. arms: "no augmentation" first, then each recipe (its per-image steps, applied with
   ``item = relative path`` and ``copy = epoch`` so every epoch sees fresh, reproducible copies; and its
   batch stage through ``Recipe.batch_transform`` when the recipe has one). An ``augmix`` step with
   ``jsd: true`` trains AugMix-style: the loss on the clean image plus ``jsd_weight`` times the
   Jensen-Shannon divergence between the clean image and two augmented views;
4. for each seed and arm: the same model, the same initial weights (drawn from a generator of the seed,
   never the global RNG), the same batch order per epoch; only the augmentation differs (paired design);
5. on the untouched validation set: accuracy, NLL, ECE (15 bins) with the reliability bins, per-class
   accuracy, and the per-epoch curves; then mean +- std over seeds and a paired comparison of every
   recipe against no augmentation (``metrics.paired_comparison``).

The result is plain data (JSON-able) holding the validation predictions, so every number can be
recomputed from ``results.json``. ``report.write_report`` turns it into a folder with plots and HTML.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from augstudio.core.base import seeding
from augstudio.core.base.device import deterministic as deterministic_on
from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import (
    AugstudioError,
    DatasetError,
    JobCancelled,
    RecipeError,
)
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.engine.training import (  # AugMix's second view (copy index) and JS term
    JSD_COPY_OFFSET,
    jsd_loss,
)
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import picture_to_pil, read_image
from augstudio.core.models.networks import build_model, check_model_name, init_weights

from . import metrics
from .report import check_output, write_report

NO_AUG = "no augmentation"
RESULTS_VERSION = 1


# -- data ----------------------------------------------------------------------------------------------------
def stratified_split(labels: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): per class, a seeded permutation; round(n * f) to validation (at least one when
    the class has two or more items, never all of them)."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    train, val = [], []
    for y in sorted(by_class):
        idx = by_class[y]
        g = seeding.generator(seed, "split", 0, f"class{y}")
        perm = [idx[j] for j in torch.randperm(len(idx), generator=g, device=g.device).tolist()]
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val += perm[:n_val]
        train += perm[n_val:]
    return sorted(train), sorted(val)


class _Pictures:
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


class _Inputs:
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


def _recipe_name(r, i: int, taken: set) -> str:
    src = getattr(r, "source", None)
    base = Path(src).stem if src else f"recipe {i + 1}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base} ({k})", k + 1
    taken.add(name)
    return name


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


# -- the job -------------------------------------------------------------------------------------------------
def evaluate_job(data, recipes, model: str = "probe", epochs: int = 10, seeds=2, val_fraction: float = 0.2,
                 image_size=None, batch_size: int = 32, lr: float = 5e-3, weight_decay: float = 5e-4,
                 split_seed: int = 0, device=None, token: CancelToken | None = None, report=None,
                 recipe_names: list[str] | None = None, threads: int | None = None,
                 cache_bytes: int = 2 << 30, deterministic: bool = True):
    """The experiment job. ``recipes``: paths, dicts or ``Recipe`` objects (no-augmentation is added as the
    first arm). ``seeds``: a count N (seeds 0..N-1) or a list. ``image_size``: model input (h, w) or one int;
    default: the dataset's common size when all images share one and it is at most 128, else 64.
    ``report``: a folder to write the report into (results.json, PNG plots, report.html).
    ``cache_bytes``: decoded pictures kept in memory; beyond it, pictures are read again when used.
    ``device``: cpu, cuda, mps or auto; ``deterministic``: deterministic algorithms where the device needs
    them (CUDA), so the same seeds give the same numbers on the same machine."""

    token = token or CancelToken()
    t_start = time.time()
    if isinstance(seeds, int):
        if seeds < 1:
            raise RecipeError(f"--seeds must be >= 1, got {seeds}")
        seeds = list(range(seeds))
    seeds = [int(s) for s in seeds]
    if epochs < 1:
        raise RecipeError(f"--epochs must be >= 1, got {epochs}")
    if not 0 < val_fraction < 1:
        raise RecipeError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if batch_size < 1:
        raise RecipeError(f"batch size must be >= 1, got {batch_size}")

    check_model_name(model)
    arms: list[tuple[str, Recipe]] = [(NO_AUG, Recipe())]
    taken = {NO_AUG}
    for i, r in enumerate(recipes):
        rec = load_recipe(r)
        name = recipe_names[i] if recipe_names and i < len(recipe_names) else _recipe_name(rec, i, taken)
        taken.add(name)
        arms.append((name, rec))

    # dataset ------------------------------------------------------------------------------------------
    ds = scan(data)
    if report is not None:  # say so now, not after an hour of training

        check_output(report, ds.root)
    if ds.layout != "imagefolder" or len(ds.classes) < 2:
        raise DatasetError(f"{ds.root}: evaluation needs a labelled dataset: one sub-folder per class, at least "
                           f"two classes (found {len(ds.classes)} class folder(s), layout {ds.layout}).")
    problems = [{"path": p.path, "reason": p.reason} for p in ds.problems]
    pics = _Pictures(ds.root, cache_bytes)
    labels, paths = [], []
    kinds, sizes, max_index = set(), set(), 0
    n_items = len(ds.items)
    for k, it in enumerate(ds.items):
        if k % 32 == 0:
            token.check(f"decoded {k} of {n_items} images")
            yield Progress(k, n_items, f"decoding images {k}/{n_items}")
        try:
            pic = read_image(ds.abspath(it))
        except AugstudioError as e:
            problems.append({"path": it.path, "reason": str(e)})
            continue
        pics.add(it.path, pic)
        kinds.add(pic.kind)
        sizes.add(pic.size)
        if pic.kind == "categorical":
            max_index = max(max_index, int(pic.pixels.max()))
        labels.append(it.label)
        paths.append(it.path)
    if len(set(labels)) < 2:
        raise DatasetError(f"{ds.root}: fewer than two classes have readable images; nothing to compare.")
    categorical = kinds == {"categorical"}
    if image_size is None:
        image_size = next(iter(sizes)) if len(sizes) == 1 and max(next(iter(sizes))) <= 128 else (64, 64)
    elif isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = (int(image_size[0]), int(image_size[1]))
    if categorical and model == "probe":
        ncat = max_index + 1
        inputs = _Inputs("onehot", image_size, max(ncat, 2))
    else:
        inputs = _Inputs("rgb", image_size)
    num_classes = len(ds.classes)

    train_idx, val_idx = stratified_split(labels, val_fraction, split_seed)
    if not val_idx:
        raise DatasetError(f"{ds.root}: no class has two or more images, so nothing can be held out for validation.")
    dev = resolve_device(device)
    settled = contextlib.ExitStack()
    settled.enter_context(deterministic_on(dev, deterministic))
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)

    try:
        val_x = torch.stack([inputs(pics[i]) for i in val_idx]).to(dev)
        norm = _channel_stats([inputs(pics[i]) for i in train_idx]) if inputs.mode != "onehot" else (None, None)
        val_y = torch.tensor([labels[i] for i in val_idx], device=dev)
        plain_train = None  # the no-augmentation inputs, made once

        # recipes must suit the data (e.g. a colour op on wafer maps): say so before any training
        for name, rec in arms[1:]:
            if not rec.steps:
                continue
            pipe = rec.pipeline()
            try:
                pipe.run(pics[train_idx[0]], rec.seed, paths[train_idx[0]], 0)
            except RecipeError as e:
                where = f"{rec.source}: " if rec.source else f"recipe '{name}': "
                raise RecipeError(f"{where}{e}") from None

        total = len(seeds) * len(arms) * epochs
        done = 0
        runs: dict[str, list[dict]] = {name: [] for name, _ in arms}
        for seed in seeds:
            for name, rec in arms:
                rec_s = rec.copy()
                rec_s.seed = seeding.derive_seed(rec.seed, "evaluate", seed)
                pipe = rec_s.pipeline() if rec_s.steps else None
                net = build_model(model, inputs.channels, num_classes, *norm)
                init_weights(net, seeding.generator(seed, "evaluate", 0, "init"))
                net.to(dev)
                batch_tf, smoothing = None, 0.0
                if any(s.enabled for s in rec_s.batch):
                    if categorical:
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
                if jsd is not None and plain_train is None:
                    plain_train = torch.stack([inputs(pics[i]) for i in train_idx])
                opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
                # one cycle (warm up, then anneal to ~0): short runs end at a settled minimum
                steps = epochs * max(1, -(-len(train_idx) // batch_size))
                sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(one_cycle, steps=steps))
                curves = {"epoch": [], "train_loss": [], "train_accuracy": [], "val_accuracy": [], "val_nll": []}
                skipped: set[str] = set()
                for epoch in range(epochs):
                    token.check(f"seed {seed}, {name}, epoch {epoch + 1}")
                    # the same order for every arm of this seed
                    g_order = seeding.generator(seed, "evaluate", epoch, "order")
                    order = torch.randperm(len(train_idx), generator=g_order, device=g_order.device)
                    if pipe is None and plain_train is None:
                        plain_train = torch.stack([inputs(pics[i]) for i in train_idx])
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
                                    out, _ = pipe.run(pics[i], rec_s.seed, paths[i], epoch)
                                    if jsd is not None:  # a second, independent view of the same image
                                        out2, _ = pipe.run(pics[i], rec_s.seed, paths[i], epoch + JSD_COPY_OFFSET)
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
                    done += 1
                    yield Progress(done, total, f"seed {seed} · {name} · epoch {epoch + 1}/{epochs} · "
                                   f"val acc {curves['val_accuracy'][-1]:.3f}",
                                   preview={"arm": name, "seed": seed, "curves": _copy.deepcopy(curves)})
                m = metrics.summary(probs, val_y.cpu())
                runs[name].append({"seed": seed, "metrics": m, "curves": curves, "probs": probs.tolist(),
                                   "skipped_items": sorted(skipped)})
    finally:
        settled.close()
        if threads:
            torch.set_num_threads(old_threads)

    result = {
        "augstudio_results": RESULTS_VERSION,
        "config": {"data": str(ds.root), "model": model, "epochs": epochs, "seeds": seeds,
                   "val_fraction": val_fraction, "split_seed": split_seed, "image_size": list(image_size),
                   "input_mode": inputs.mode, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                   "device": str(dev), "ece_bins": metrics.ECE_BINS},
        "classes": list(ds.classes),
        "split": {"train": [paths[i] for i in train_idx], "val": [paths[i] for i in val_idx]},
        "val_labels": [labels[i] for i in val_idx],
        "arms": [{"name": name, "recipe": rec.to_dict() if name != NO_AUG else None,
                  "source": rec.source, "runs": runs[name]} for name, rec in arms],
        "problems": problems,
        "seconds": round(time.time() - t_start, 2),
    }
    summarize(result)
    if report is not None:
        yield Progress(total, total, "writing the report")
        write_report(result, report)
        result["report"] = str(Path(report))
    return result


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


def summarize(result: dict) -> dict:
    """Fill ``summary`` (mean +- std over seeds) per arm and ``comparisons`` (paired, each recipe vs no
    augmentation, same seeds) from the runs. Everything derives from the stored predictions' metrics."""
    base = result["arms"][0]
    for arm in result["arms"]:
        s: dict[str, Any] = {}
        for key in ("accuracy", "nll", "ece"):
            mean, std = metrics.mean_std([r["metrics"][key] for r in arm["runs"]])
            s[key] = {"mean": mean, "std": std}
        k = len(result["classes"])
        s["per_class_accuracy"] = [metrics.mean_std([r["metrics"]["per_class_accuracy"][c] for r in arm["runs"]])[0]
                                   for c in range(k)]
        arm["summary"] = s
    comps = []
    base_by_seed = {r["seed"]: r for r in base["runs"]}
    for arm in result["arms"][1:]:
        pairs = [(r, base_by_seed[r["seed"]]) for r in arm["runs"] if r["seed"] in base_by_seed]
        c = {"arm": arm["name"], "against": base["name"]}
        for key, hib in (("accuracy", True), ("nll", False), ("ece", False)):
            c[key] = metrics.paired_comparison([a["metrics"][key] for a, _ in pairs],
                                               [b["metrics"][key] for _, b in pairs], higher_is_better=hib)
        comps.append(c)
    result["comparisons"] = comps
    return result


__all__ = ["evaluate_job", "summarize", "stratified_split",
           "NO_AUG", "JobCancelled"]
