"""The batch stage: the recipe's ``batch:`` list (mixup, cutmix, puzzlemix, label_smoothing, ...) applied
to a batch of images and labels, giving soft labels. The same stage runs in a training loop
(``Recipe.batch_transform``) and in export (pairs drawn from the seed).

Training use::

    mix = recipe.batch_transform(num_classes=10, model=model)   # model: the network being trained
    for images, labels in loader:
        images, soft = mix(images, labels)
        loss = -(soft * model(images).log_softmax(1)).sum(1).mean()

Images: float ``N x C x H x W`` (0..1 or normalised, as the loader gives them) or uint8 (returned as
float 0..1). Labels: class indices ``(N,)`` or soft labels ``(N, K)``. The steps run in order, each with
its probability ``p`` (one coin per batch). Randomness comes from the recipe seed, ``torch.initial_seed()``
and a call counter (as for ``sample_transform``), never from the global RNG. Pass ``key=`` to make a batch's
draws depend on the recipe seed and that key only, e.g. ``mix(images, labels, key=(epoch, step))``: the
same key gives the same mixing in any process, whatever ran before.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import AugstudioError, ImageError, JobCancelled, RecipeError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.io.journal import read_journal


def _build_ops(recipe):
    from augstudio.core.ops import get_batch_op
    from .pipeline import stream_keys

    ops = []
    keys = stream_keys(recipe.batch)
    for i, step in enumerate(recipe.batch):
        cls = get_batch_op(step.op, f"batch step {i + 1} ")
        ops.append((step, cls(**step.values), keys[i]))
    return ops


def to_soft(labels, num_classes: int, device=None):
    """Class indices (N,) or soft labels (N, K) -> float soft labels (N, K)."""
    labels = torch.as_tensor(labels, device=device)
    if labels.dim() == 2:
        if labels.shape[1] != num_classes:
            raise RecipeError(f"batch stage: soft labels have {labels.shape[1]} classes, expected {num_classes}")
        return labels.float()
    if labels.dim() != 1:
        raise RecipeError(f"batch stage: labels must be class indices (N,) or soft labels (N, K), got shape "
                          f"{tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise RecipeError(f"batch stage: class index out of range 0..{num_classes - 1} "
                          f"(got {int(labels.min())}..{int(labels.max())}); check num_classes")
    return torch.nn.functional.one_hot(labels, num_classes).float()


def apply_batch_ops(ops, images, soft, seed, key, model=None, pair=None):
    """Run the batch ops on one batch with generators derived from (seed, key). Returns images, soft, records.

    ``pair``: force the pairing (export uses [1, 0] on a batch of two).
    """
    n = images.shape[0]
    size = tuple(images.shape[-2:])
    records = []
    for step, op, stream in ops:
        if not step.enabled:
            records.append({"op": step.op, "applied": False, "params": None})
            continue
        gen = seeding.generator(seed, key, 0, stream)
        applied = seeding.coin(gen, step.p)
        if not applied:
            records.append({"op": step.op, "applied": False, "params": None})
            continue
        params = op.sample(gen, n, size, soft.shape[1])
        if pair is not None and "perm" in params:
            params["perm"] = list(pair)
        try:
            images, soft = op.apply_to_batch(images, soft, params, model=model)
        except AugstudioError:
            raise
        except Exception as e:
            raise RecipeError(f"batch step {step.op}: failed on a batch of shape {tuple(images.shape)}: "
                              f"{type(e).__name__}: {e}") from e
        records.append({"op": step.op, "applied": True, "params": params})
    return images, soft, records


def batch_key(key) -> str:
    """The seeding key for a batch named by ``key``: a string as it is, an int as its digits, a tuple / list
    of ints and strings joined with ``:`` (so ``("evaluate", 0, 2, 32)`` is ``"evaluate:0:2:32"``)."""
    parts = key if isinstance(key, (tuple, list)) else (key,)
    if not parts or not all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in parts):
        raise RecipeError(f"batch stage: key={key!r} cannot name a batch; use an int, a string or a tuple of "
                          "them, e.g. key=(epoch, step)")
    return ":".join(str(p) for p in parts)


class BatchStage:
    """``(images, labels) -> (images, soft_labels)`` for the recipe's batch steps."""

    def __init__(self, recipe, num_classes: int, model=None, device=None):
        if int(num_classes) < 1:
            raise RecipeError(f"batch stage: num_classes must be >= 1, got {num_classes}")
        self.recipe = recipe
        self.num_classes = int(num_classes)
        self.model = model
        self.device = torch.device(device) if device is not None else None
        self.ops = _build_ops(recipe)
        self._counter = itertools.count()
        self.last_records: list[dict] = []

    def __call__(self, images, labels, key=None):
        """Mix one batch. ``key``: None (fresh draws from ``torch.initial_seed()`` and a call counter) or an
        int, a string, or a tuple / list of ints and strings naming the batch (e.g. ``(epoch, step)``):
        the draws then come from the recipe seed and the key only, so the batch is reproducible."""
        key_text = None if key is None else batch_key(key)
        images = torch.as_tensor(images)
        if self.device is not None:
            images = images.to(self.device)
        if images.dim() != 4:
            raise RecipeError(f"batch stage: images must be N x C x H x W, got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            images = images.float()
        soft = to_soft(labels, self.num_classes, images.device)
        if soft.shape[0] != images.shape[0]:
            raise RecipeError(f"batch stage: {images.shape[0]} images but {soft.shape[0]} labels")
        if key_text is None:
            key_text = f"batch:{torch.initial_seed()}:{next(self._counter)}"
        images, soft, self.last_records = apply_batch_ops(self.ops, images, soft, self.recipe.seed, key_text,
                                                          model=self.model)
        return images, soft


# -- one pair, for the GUI's mix panel and `augstudio mix` ------------------------------------------------
def heat(x):
    """A (H, W) map -> RGB float (3, H, W) in 0..1 (black, red, yellow, white), scaled by its maximum."""
    x = x.float()
    x = x / x.max().clamp_min(1e-12)
    r = (x * 3).clamp(0, 1)
    g = (x * 3 - 1).clamp(0, 1)
    b = (x * 3 - 2).clamp(0, 1)
    return torch.stack([r, g, b])


def mix_pair(xa, xb, method: str, lam: float | None = None, seed: int = 0, model=None, **values) -> dict:
    """Mix two images (float ``C x H x W`` in 0..1; b is resized to a's size) with one batch op.

    Returns a dict: ``mixed`` (C, H, W), ``weights`` (share of a, share of b), ``params`` (plain data),
    ``mask`` (H, W: where a shows), and for PuzzleMix ``sal_a``, ``sal_b``, ``transported_a``,
    ``transported_b``. ``lam`` overrides the drawn lambda; ``seed`` picks the draw (reroll = new seed).
    ``model``: an ``nn.Module`` or ``models.LoadedModel`` for PuzzleMix's saliency (its predicted classes
    are the labels); without one the image-gradient stand-in is used.
    """
    from augstudio.core.ops import get_batch_op
    from augstudio.core.ops.mix import cutmix_box

    if xb.shape[-2:] != xa.shape[-2:]:
        xb = torch.nn.functional.interpolate(xb[None].float(), size=xa.shape[-2:], mode="bilinear",
                                             align_corners=False, antialias=True)[0]
    if xb.shape[0] != xa.shape[0]:
        raise RecipeError(f"mix: the two images have {xa.shape[0]} and {xb.shape[0]} channels")
    op = get_batch_op(method)(**values)
    size = tuple(xa.shape[-2:])
    gen = seeding.generator(seed, "mix-pair", 0, method)
    params = op.sample(gen, 2, size, 2)
    params["perm"] = [1, 0]
    if lam is not None:
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise RecipeError(f"mix: lambda must be within 0 .. 1, got {lam}")
        params["lam"] = lam
        if method == "cutmix":
            box = cutmix_box(lam, size, *params["center"])
            params.update(lam_drawn=lam, box=box,
                          lam=1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(size[0] * size[1]))
    images = torch.stack([xa.float(), xb.float()])
    soft = torch.eye(2)
    out: dict = {"params": params}
    if method == "puzzlemix":
        labels = soft
        if model is not None:
            from augstudio.core.methods.puzzlemix import _forward_fn

            fn, _module = _forward_fn(model)
            with torch.no_grad():
                labels = fn(images).argmax(1)
        res = op.run(images, labels, params, model)
        out.update(mixed=res.mixed[0], mask=res.mask[0], sal_a=res.sal1[0], sal_b=res.sal2[0],
                   transported_a=res.transported1[0], transported_b=res.transported2[0])
        r = float(res.ratio[0])
        params["block_mask"] = res.block_mask[0].tolist()
    else:
        mixed, y = op.apply_to_batch(images, soft, params)
        out["mixed"] = mixed[0]
        r = float(y[0, 0])
        if method == "cutmix":
            m = torch.ones(size)
            y1, y2, x1, x2 = params["box"]
            m[y1:y2, x1:x2] = 0
            out["mask"] = m
        else:
            out["mask"] = torch.full(size, r)
    out["weights"] = (r, 1.0 - r)
    return out


# -- export ----------------------------------------------------------------------------------------------------
PARTIAL = "manifest.partial.jsonl"


def _load_model_for(ops, device=None):
    """A model for steps that need one in export (PuzzleMix's ``model:`` parameter), else None."""
    for step, op, _ in ops:
        spec = getattr(op, "model", None)
        if getattr(op, "needs_model", False) and spec and step.enabled:
            from augstudio.core.models.loading import load_model

            return load_model(spec, device=device or "cpu")
    return None


def _picture_tensor(pic):
    if pic.kind == "categorical":
        raise ImageError(None, "categorical (palette) images cannot be mixed: their values are category "
                               "labels, and a blend of labels means nothing. Remove the batch steps for "
                               "this dataset")
    x = pic.pixels
    if pic.kind == "gray":
        x = x.expand(3, -1, -1)
    elif pic.kind == "rgba":
        x = x[:3]
    return x.float() / 255.0


def export_batch_stage(ds, recipe, out_root, copies: int = 1, workers: int = 1, fmt: str = "png",
                       cancel: CancelToken | None = None):
    """Generator job: for every (item, copy) mix the item with a partner drawn from the seed and write
    the result flat into ``out_root`` with ``labels.csv`` (soft label per image; class names in the header),
    ``manifest.jsonl`` (sources, per-image steps, batch params incl. the PuzzleMix block mask),
    ``errors.jsonl`` and ``recipe.yaml``. Atomic writes; re-running resumes; bad files are skipped and
    reported. Returns an ``ExportSummary``. (Runs in this process; ``workers`` is accepted for symmetry.)
    """
    from augstudio.core.base.errors import OutputError
    from augstudio.core.io.images import Picture, atomic_write_bytes, encode, read_image
    from augstudio.core.workflows.export import (
        ExportSummary,
        _claim_output_folder,
        _fingerprint,
        _os_error_message,
        finish_export,
    )

    out_root = Path(out_root)
    cancel = cancel or CancelToken()
    ops = _build_ops(recipe)
    pipe = recipe.pipeline()
    classes = list(ds.classes) or ["unlabelled"]
    k = len(classes)
    model = _load_model_for(ops)
    ext = "jpg" if fmt == "jpg" else "png"
    summary = ExportSummary(str(out_root))
    summary.sources = len(ds.items)
    for prob in ds.problems:
        if not prob.reason.endswith("ignored"):
            summary.errors.append({"source": prob.path, "error": prob.reason})

    _claim_output_folder(out_root, _fingerprint(recipe, copies, fmt, ds.root))  # resume only the same export
    partial_path = out_root / PARTIAL
    done: dict[str, dict] = {}
    for path in (out_root / "manifest.jsonl", partial_path):  # a finished export run again redoes nothing
        done.update(read_journal(path, key="output"))

    bad: dict[str, str] = {}
    cache: dict[tuple, tuple] = {}

    def load(idx: int, copy: int):
        it = ds.items[idx]
        if it.path in bad:
            raise ImageError(it.path, bad[it.path])
        key = (idx, copy)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            try:
                pic = read_image(ds.root / it.path)
                out, steps = pipe.run(pic, recipe.seed, it.path, copy)
                cache[key] = (_picture_tensor(out), steps)
            except ImageError as e:
                bad[it.path] = e.cause
                raise
        return cache[key]

    n_items = len(ds.items)
    tasks = [(i, c) for i in range(n_items) for c in range(copies)]
    total = len(tasks)
    yield Progress(0, total, "starting")
    finished = 0
    with open(partial_path, "a", encoding="utf-8") as partial:
        for i, c in tasks:
            it = ds.items[i]
            name = f"{i:06d}_{Path(it.path).stem}__{c}.{ext}"
            if name in done and (out_root / name).exists():
                summary.skipped_existing += 1
                finished += 1
                continue
            try:
                xa, steps_a = load(i, c)
            except (ImageError, RecipeError) as e:
                if it.path not in {er["source"] for er in summary.errors}:
                    summary.errors.append({"source": it.path, "error": getattr(e, "cause", str(e))})
                finished += 1
                yield Progress(finished, total, it.path)
                continue
            # the partner: drawn from the seed; unreadable partners are replaced by the next draw
            gen = seeding.generator(recipe.seed, it.path, c, "batch-pair")
            partner = None
            for _ in range(16):
                j = seeding.choice(gen, n_items)
                if n_items > 1 and j == i:
                    continue
                try:
                    xb, steps_b = load(j, c)
                    partner = j
                    break
                except (ImageError, RecipeError) as e:
                    pj = ds.items[j].path
                    if pj not in {er["source"] for er in summary.errors}:
                        summary.errors.append({"source": pj, "error": getattr(e, "cause", str(e))})
            if partner is None:
                summary.errors.append({"source": it.path, "error": "no readable partner image to mix with"})
                finished += 1
                continue
            if xb.shape != xa.shape:
                xb = torch.nn.functional.interpolate(xb[None], size=xa.shape[-2:], mode="bilinear",
                                                     align_corners=False, antialias=True)[0]
            la = ds.items[i].label if ds.items[i].label >= 0 else 0
            lb = ds.items[partner].label if ds.items[partner].label >= 0 else 0
            images = torch.stack([xa, xb])
            soft = to_soft(torch.tensor([la, lb]), k)
            try:
                mixed, soft_out, records = apply_batch_ops(ops, images, soft, recipe.seed, f"{it.path}#{c}",
                                                           model=model, pair=[1, 0])
            except RecipeError as e:
                summary.errors.append({"source": it.path, "error": str(e)})
                finished += 1
                continue
            for rec in records:  # the pairing inside a 2-image batch says nothing; name the partner instead
                if rec["params"]:
                    rec["params"].pop("perm", None)
            _add_masks(ops, records, mixed, images, soft, model)
            pix = (mixed[0].clamp(0, 1) * 255).round().to(torch.uint8)
            try:
                atomic_write_bytes(out_root / name, encode(Picture(pix, "rgb"), ext))
            except OSError as e:
                raise OutputError(_os_error_message(e, out_root)) from None
            rec = {"output": name, "a": it.path, "b": ds.items[partner].path, "copy": c,
                   "label": [round(float(v), 6) for v in soft_out[0]], "steps_a": steps_a, "steps_b": steps_b,
                   "batch": records}
            partial.write(json.dumps(rec, separators=(",", ":")) + "\n")
            partial.flush()
            done[name] = rec
            summary.written += 1
            finished += 1
            yield Progress(finished, total, name)
            if cancel.cancelled:
                summary.cancelled = True
                raise JobCancelled(f"export cancelled after {finished} of {total} images; run it again to resume")

    order = {f"{i:06d}_{Path(ds.items[i].path).stem}__{c}.{ext}": n for n, (i, c) in enumerate(tasks)}
    recs = sorted((r for r in done.values() if r["output"] in order), key=lambda r: order[r["output"]])
    header = "file," + ",".join(_csv_field(c) for c in classes)
    rows = [r["output"] + "," + ",".join(f"{v:.6f}" for v in r["label"]) for r in recs]
    atomic_write_bytes(out_root / "labels.csv", ("\n".join([header] + rows) + "\n").encode())
    manifest = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in recs)
    return finish_export(out_root, recipe, summary, partial_path, manifest)


def _csv_field(s: str) -> str:
    s = str(s)
    if any(ch in s for ch in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def _add_masks(ops, records, mixed, images, soft, model):
    """Record PuzzleMix's block mask (and mixed ratio) in the manifest."""
    for (_step, op, _), rec in zip(ops, records):
        res = getattr(op, "last_result", None)
        if rec["applied"] and res is not None:
            rec["params"]["block_mask"] = [[round(float(v), 3) for v in row] for row in res.block_mask[0]]
            rec["params"]["ratio"] = round(float(res.ratio[0]), 6)
            rec["params"]["saliency"] = "model" if model is not None else "image-gradient"
