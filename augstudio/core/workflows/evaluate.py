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

One (arm, seed) run is ``evaluate_run.train_run``; the local engine runs them one after the other here,
the Ray engine (``engine="ray"``) as one Ray task each; results.json is the same either way.

The result is plain data (JSON-able) holding the validation predictions, so every number can be
recomputed from ``results.json``. ``report.write_report`` turns it into a folder with plots and HTML.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

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
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_image
from augstudio.core.models.networks import check_model_name

from . import metrics
from .evaluate_run import Experiment, Inputs, Pictures, RunWorker, train_run
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


def _recipe_name(r, i: int, taken: set) -> str:
    src = getattr(r, "source", None)
    base = Path(src).stem if src else f"recipe {i + 1}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base} ({k})", k + 1
    taken.add(name)
    return name


# -- the job -------------------------------------------------------------------------------------------------
def evaluate_job(data, recipes, model: str = "probe", epochs: int = 10, seeds=2, val_fraction: float = 0.2,
                 image_size=None, batch_size: int = 32, lr: float = 5e-3, weight_decay: float = 5e-4,
                 split_seed: int = 0, device=None, token: CancelToken | None = None, report=None,
                 recipe_names: list[str] | None = None, threads: int | None = None,
                 cache_bytes: int = 2 << 30, deterministic: bool = True, engine: str = "local",
                 address: str | None = None):
    """The experiment job. ``recipes``: paths, dicts or ``Recipe`` objects (no-augmentation is added as the
    first arm). ``seeds``: a count N (seeds 0..N-1) or a list. ``image_size``: model input (h, w) or one int;
    default: the dataset's common size when all images share one and it is at most 128, else 64.
    ``report``: a folder to write the report into (results.json, PNG plots, report.html).
    ``cache_bytes``: decoded pictures kept in memory; beyond it, pictures are read again when used.
    ``device``: cpu, cuda, mps or auto; ``deterministic``: deterministic algorithms where the device needs
    them (CUDA), so the same seeds give the same numbers on the same machine.
    ``engine="ray"``: every (arm, seed) run is one Ray task (``threads`` CPUs each, default 1, and one GPU when
    the device is CUDA, or auto on a cluster with GPUs) on the cluster at ``address`` (else ``RAY_ADDRESS``,
    else a Ray started here); the numbers equal a local run with the same ``threads`` (torch's CPU
    reductions depend on the thread count). ``data`` must be a path every node can reach."""

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
    if engine not in ("local", "ray"):
        raise RecipeError(f"--engine must be local or ray, got {engine!r}")

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
    pics = Pictures(ds.root, cache_bytes)
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
        inputs = Inputs("onehot", image_size, max(ncat, 2))
    else:
        inputs = Inputs("rgb", image_size)

    train_idx, val_idx = stratified_split(labels, val_fraction, split_seed)
    if not val_idx:
        raise DatasetError(f"{ds.root}: no class has two or more images, so nothing can be held out for validation.")
    session = None
    if engine == "ray":
        from .ray_engine import RaySession, gpus_for  # deferred: ray (optional)

        session = RaySession(address).__enter__()
    settled = contextlib.ExitStack()
    old_threads = torch.get_num_threads()
    try:
        if session is not None:
            dev_type, gpus = gpus_for(device, session.resources())
            dev = torch.device(dev_type)
        else:
            dev, gpus = resolve_device(device), 0.0
        settled.enter_context(deterministic_on(dev, deterministic))
        if threads:
            torch.set_num_threads(threads)
        val_x = torch.stack([inputs(pics[i]) for i in val_idx])
        norm = _channel_stats([inputs(pics[i]) for i in train_idx]) if inputs.mode != "onehot" else (None, None)
        val_y = torch.tensor([labels[i] for i in val_idx], device="cpu")

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

        exp = Experiment(arms, pics, labels, paths, train_idx, inputs, norm, len(ds.classes), categorical, val_x,
                         val_y, model, epochs, batch_size, lr, weight_decay, str(dev), deterministic, threads)
        units = [(seed, a) for seed in seeds for a in range(len(arms))]
        if session is None:
            outcomes = yield from _local_runs(exp, units, token)
        else:  # one Ray task per (seed, arm), each with `threads` CPUs (default 1) and a GPU when on CUDA
            outcomes = yield from _ray_runs(exp, units, token, cpus=threads or 1, gpus=gpus)
        runs: dict[str, list[dict]] = {name: [] for name, _ in arms}
        for unit in units:  # in the local order, whatever order the runs finished in
            res = outcomes[unit]
            runs[arms[unit[1]][0]].append(res["run"])
            problems.extend(res["problems"])
    finally:
        settled.close()
        if threads:
            torch.set_num_threads(old_threads)
        if session is not None:
            session.close()

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
    total = len(units) * epochs
    if report is not None:
        yield Progress(total, total, "writing the report")
        write_report(result, report)
        result["report"] = str(Path(report))
    return result


def _local_runs(exp: Experiment, units: list, token: CancelToken):
    """Every run in this process, one after the other, with progress after every epoch."""
    total, done, outcomes = len(units) * exp.epochs, 0, {}
    for seed, a in units:
        name = exp.arms[a][0]
        gen = train_run(exp, a, seed, token)
        while True:
            try:
                ep = next(gen)
            except StopIteration as stop:
                outcomes[(seed, a)] = stop.value
                break
            done += 1
            curves = ep["curves"]
            yield Progress(done, total, f"seed {seed} · {name} · epoch {ep['epoch']}/{exp.epochs} · "
                           f"val acc {curves['val_accuracy'][-1]:.3f}",
                           preview={"arm": name, "seed": seed, "curves": curves})
    return outcomes


def _ray_runs(exp: Experiment, units: list, token: CancelToken, cpus: float, gpus: float):
    """Every run as one Ray task; progress when a run ends (all its epochs at once)."""
    from .ray_engine import ray_results  # deferred: ray (optional)

    total, done, outcomes, holder = len(units) * exp.epochs, 0, {}, []
    yield Progress(0, total, f"{len(units)} runs on Ray")
    try:
        for res in ray_results(units, RunWorker, (exp,), holder, cpus=cpus, gpus=gpus, chunk=1):
            unit = (res["seed"], res["arm"])
            outcomes[unit] = res
            done += exp.epochs
            name, curves = exp.arms[res["arm"]][0], res["run"]["curves"]
            yield Progress(done, total, f"seed {unit[0]} · {name} · done · val acc {curves['val_accuracy'][-1]:.3f}",
                           preview={"arm": name, "seed": unit[0], "curves": curves})
            token.check(f"{len(outcomes)} of {len(units)} runs done")
    finally:
        for job in holder:  # cancel the runs still in flight (cancel, Ctrl-C, an error)
            job.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _channel_stats(tensors: list) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training images (0..1), for the model's input standardisation."""
    x = torch.stack(tensors).double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


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
