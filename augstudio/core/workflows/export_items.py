"""The per-item work of an export, run in this process or in a worker process: decode one source, apply the
recipe for each copy, mix with a partner when the recipe has a batch stage, write each output atomically.
Every result is a pure function of (recipe, seed, item, copy) and of which files can be read, so the bytes
do not depend on the worker count or order.

The batch stage of an export mixes each (item, copy) with one partner drawn from the seed path
(``(seed, item, copy, "batch-pair")``; unreadable partners are skipped to the next draw): the two images
are the recipe's per-image results for that copy, mixed by the batch steps keyed by ``"<item>#<copy>"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from augstudio.core.base import seeding
from augstudio.core.base.device import deterministic, resolve_device
from augstudio.core.base.errors import AugstudioError, ImageError, OutputError, RecipeError
from augstudio.core.engine.batch_stage import apply_batch_ops, build_batch_ops, to_soft
from augstudio.core.engine.mixing import mixable
from augstudio.core.engine.recipe import Recipe
from augstudio.core.io.images import Picture, atomic_write_bytes, encode, read_image
from augstudio.core.io.outputs import is_within, os_error_message, safe_rel
from augstudio.core.models.loading import load_model

PARTNER_TRIES = 16  # draws for a readable partner before the item is reported as unmixable


@dataclass(frozen=True)
class ItemTask:
    src_root: str
    out_root: str
    index: int  # position in the dataset's item list (the batch stage draws partners by index)
    rel: str
    class_name: str | None
    outputs: tuple  # (copy, rel_out, fmt) per copy
    targets: bool = False  # records say the source's size and kind: the targets are replayed from them


@dataclass(frozen=True)
class BatchContext:
    """What the batch stage needs beyond the recipe: every item's path and label, the class count."""

    items: tuple  # (rel, label) per dataset item
    num_classes: int


def load_stage_model(recipe: Recipe):
    """The model a batch step names for itself (PuzzleMix's ``model:``), loaded on the CPU; else None."""
    for step, op, _ in build_batch_ops(recipe.batch):
        spec = op.model_spec()
        if step.enabled and op.needs_model and spec:
            return load_model(spec, device="cpu")
    return None


class ItemWorker:
    """Turns one ``ItemTask`` into written files and manifest records (one per worker process)."""

    def __init__(self, recipe_dict: dict, threads: int | None, batch: BatchContext | None, device: str = "cpu",
                 deterministic: bool = True):
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.deterministic = deterministic
        self.recipe = Recipe.from_dict(recipe_dict)
        self.pipeline = self.recipe.pipeline()
        self.batch = batch
        self.batch_ops = build_batch_ops(self.recipe.batch) if batch is not None else []
        self.model = load_stage_model(self.recipe) if batch is not None else None

    def process(self, task: ItemTask) -> dict:
        """Decode one source, write its copies; returns records or an error. Never raises for bad input."""
        with deterministic(self.device, self.deterministic):
            return self._process(task)

    def _process(self, task: ItemTask) -> dict:
        try:
            pic = read_image(Path(task.src_root) / task.rel)
        except ImageError as e:
            return {"source": task.rel, "error": e.cause}
        except AugstudioError as e:
            return {"source": task.rel, "error": str(e)}
        records = []
        try:
            out_root = Path(task.out_root)
            for copy, rel_out, fmt in task.outputs:
                out, rec = self.output(task, pic, copy)
                if out.kind == "categorical" and fmt != "png":
                    fmt = "png"  # palette images keep their categories only in PNG (and the name says so)
                    rel_out = str(PurePosixPath(rel_out).with_suffix(".png"))
                data = encode(out, fmt)
                dest = out_root / safe_rel(rel_out)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not is_within(dest.parent.resolve(), out_root):
                    # a symlinked sub-folder placed in the output folder must not carry writes elsewhere
                    return {"source": task.rel, "error": f"output folder {dest.parent} is a link that leads "
                            f"outside {out_root}; remove the link. Nothing was written for this image."}
                atomic_write_bytes(dest, data)
                records.append({"output": rel_out, "source": task.rel, "class": task.class_name, "copy": copy,
                                "size": list(out.size), **rec})
                if task.targets:
                    records[-1].update(source_size=list(pic.size), kind=pic.kind)
        except (RecipeError, ImageError, OutputError) as e:
            return {"source": task.rel, "error": str(e)}
        except OSError as e:
            return {"source": task.rel, "fatal": os_error_message(e, task.out_root)}
        except Exception as e:  # noqa: BLE001 - one broken item must not end the export
            return {"source": task.rel, "error": f"{type(e).__name__}: {e}"}
        return {"source": task.rel, "records": records}

    def output(self, task: ItemTask, pic: Picture, copy: int) -> tuple[Picture, dict]:
        """The picture for one (item, copy) and what its manifest record says about how it was made."""
        out, steps = self.run(pic, task.rel, copy)
        if self.batch is None:
            return out, {"steps": steps}
        xa = mixable(out)
        partner, xb, steps_b = self.partner(task, copy)
        if xb.shape != xa.shape:
            xb = torch.nn.functional.interpolate(xb[None], size=xa.shape[-2:], mode="bilinear",
                                                 align_corners=False, antialias=True)[0]
        la, lb = (max(self.batch.items[i][1], 0) for i in (task.index, partner))
        soft = to_soft(torch.tensor([la, lb]), self.batch.num_classes)
        mixed, soft_out, batch_records = apply_batch_ops(self.batch_ops, torch.stack([xa, xb]), soft,
                                                         self.recipe.seed, f"{task.rel}#{copy}", model=self.model,
                                                         pair=[1, 0], details=True)
        for rec in batch_records:  # the pairing inside a 2-image batch says nothing; the record names the partner
            if rec["params"]:
                rec["params"].pop("perm", None)
                rec["params"].update(_first_item(rec.pop("details", {})))
        pix = (mixed[0].clamp(0, 1) * 255).round().to(torch.uint8)
        return Picture(pix, "rgb"), {"steps": steps, "partner": self.batch.items[partner][0],
                                     "steps_partner": steps_b, "label": [round(float(v), 6) for v in soft_out[0]],
                                     "batch": batch_records}

    def run(self, pic: Picture, rel: str, copy: int) -> tuple[Picture, list]:
        """The recipe's per-image steps on the export's device; the result comes back to the CPU to be
        encoded."""
        if self.device.type == "cpu":
            return self.pipeline.run(pic, self.recipe.seed, rel, copy)
        out, steps = self.pipeline.run(pic.with_pixels(pic.pixels.to(self.device)), self.recipe.seed, rel, copy)
        return out.with_pixels(out.pixels.cpu()), steps

    def partner(self, task: ItemTask, copy: int):
        """The partner of (item, copy), drawn from the seed path; unreadable partners give way to the next
        draw (each is reported by its own item)."""
        n = len(self.batch.items)
        gen = seeding.generator(self.recipe.seed, task.rel, copy, "batch-pair")
        for _ in range(PARTNER_TRIES):
            j = seeding.choice(gen, n)
            if n > 1 and j == task.index:
                continue
            rel = self.batch.items[j][0]
            try:
                out, steps = self.run(read_image(Path(task.src_root) / rel), rel, copy)
                return j, mixable(out), steps
            except (ImageError, RecipeError):
                continue
        raise ImageError(None, f"no readable partner image to mix with in {PARTNER_TRIES} draws")


def _first_item(details: dict) -> dict:
    """An op's per-item details, for the first item of the batch, as manifest data."""
    out = {}
    for k, v in details.items():
        v = v[0]
        if isinstance(v, torch.Tensor):
            v = v.tolist()
            v = [[round(float(a), 3) for a in row] for row in v] if isinstance(v, list) else round(float(v), 6)
        out[k] = v
    return out


__all__ = ["ItemTask", "BatchContext", "ItemWorker", "load_stage_model"]
