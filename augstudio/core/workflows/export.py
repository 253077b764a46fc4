"""The export job: apply a recipe to every image of a dataset and write an augmented copy of it.

Layout of the output folder::

    DST/<class>/<stem>__<copy>.<ext>   augmented images (same class layout as the source)
    DST/manifest.jsonl                 one line per output: source, class, copy, applied params of each step
                                       (with a batch stage also: partner, its steps, the batch steps, label)
    DST/labels.csv                     with a batch stage only: the soft label of every output
    DST/errors.jsonl                   one line per source file that was skipped, with the reason
    DST/recipe.yaml                    the recipe used (with the seed and the augstudio version)
    DST/.augstudio-export.json         what decides the bytes (recipe, copies, format, source): a re-run
                                       resumes only when it matches, so two exports never mix

A recipe with a batch stage is the same job: each (item, copy) is mixed with a partner drawn from the seed
(``export_items``), in the same worker processes, under the same names, journal and finishing step.

Guarantees: outputs are byte-identical for the same recipe and seed whatever the worker count; every
file is written atomically (temporary name + rename); re-running the same command resumes and skips
finished outputs; nothing is written inside the source folder; a bad source file is skipped and
reported, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import torch

from augstudio.core.base.device import resolve_device
from augstudio.core.base.errors import JobCancelled, RecipeError, WriteError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.base.version import __version__
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.io.dataset import Item, require_images, scan
from augstudio.core.io.images import atomic_write_bytes, remove_temp_files
from augstudio.core.io.journal import read_journal
from augstudio.core.io.outputs import (
    check_output_folder,
    check_writable,
    claim_output_folder,
    is_plain_file,
    open_journal,
    os_error_message,
    safe_rel,
)

from .export_items import BatchContext, ItemTask, ItemWorker, load_stage_model
from .pool import ordered_results

FORMATS = ("png", "jpg", "same")
_SAME_OK = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".bmp": "bmp", ".tif": "tiff",
            ".tiff": "tiff"}
PARTIAL = "manifest.partial.jsonl"  # the resume journal while an export runs
STATE = ".augstudio-export.json"  # what made this folder (recipe, seed, copies, format, source)


@dataclass
class ExportSummary:
    out: str
    sources: int = 0
    written: int = 0
    skipped_existing: int = 0
    bad: int = 0
    cancelled: bool = False
    errors: list = field(default_factory=list)

    def line(self) -> str:
        state = "cancelled" if self.cancelled else "done"
        return (f"export {state}: {self.written} images written, {self.skipped_existing} already there, "
                f"{self.bad} bad source files skipped (see errors.jsonl) -> {self.out}")


def plan_outputs(items: list[Item], copies: int, fmt: str) -> dict[str, tuple]:
    """Output names per item: <class>/<sub>/<stem>__<copy>.<ext>, unique even when a.png and a.jpg meet."""
    def ext_for(rel: str) -> str:
        if fmt == "same":
            return _SAME_OK.get(PurePosixPath(rel).suffix.lower(), "png")
        return fmt

    stems: dict[str, int] = {}
    for it in items:
        base = str(PurePosixPath(it.path).with_suffix(""))
        stems[base] = stems.get(base, 0) + 1
    plan = {}
    for it in items:
        pp = PurePosixPath(it.path)
        base = str(pp.with_suffix(""))
        if stems[base] > 1:  # disambiguate by the source extension
            base = f"{base}_{pp.suffix.lstrip('.').lower()}"
        ext = ext_for(it.path)
        plan[it.path] = tuple((c, safe_rel(f"{base}__{c}.{'jpg' if ext == 'jpeg' else ext}"), ext)
                              for c in range(copies))
    return plan


def _manifest_text(records: list) -> str:
    """The final manifest's lines for one source (one compact, key-sorted JSON object per output)."""
    return "\n".join(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in records)


def _read_manifest(path: Path) -> dict[str, dict]:
    """The final manifest of an earlier, finished run, grouped per source like the journal."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return done
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return {}  # not ours or damaged: redo everything (outputs are deterministic)
        if not isinstance(rec, dict) or not isinstance(rec.get("source"), str):
            return {}
        done.setdefault(rec["source"], {"source": rec["source"], "records": []})["records"].append(rec)
    return done


def _fingerprint(recipe: Recipe, copies: int, fmt: str, src: Path, device) -> dict:
    """What decides the bytes of an export; a resume is allowed only into a folder made with the same."""
    fp = {"augstudio_export": 1, "augstudio": __version__, "source": str(Path(src).resolve()),
          "copies": copies, "format": fmt, "recipe": recipe.to_dict()}
    if device.type != "cpu":  # another device rounds differently (within a grey level): not resumable across
        fp["device"] = device.type
    return json.loads(json.dumps(fp))


def export_job(src, recipe, out, copies: int = 1, seed: int | None = None, workers: int = 1,
               fmt: str = "png", cancel: CancelToken | None = None, device: str = "cpu",
               deterministic: bool = True):
    """Generator job: yields Progress per source image; returns an ExportSummary.

    ``device``: where the recipe's steps run (``cpu``, ``cuda``, ``auto``); images are decoded and encoded
    on the CPU. ``deterministic``: deterministic algorithms where the device needs them (CUDA), so a
    re-run repeats the bytes. Raises OutputError / DatasetError / RecipeError / ModelError before any work
    when the arguments are bad.
    """
    src = Path(src)
    out = Path(out)
    recipe = load_recipe(recipe)
    if seed is not None:
        recipe.seed = int(seed)
    if copies < 1:
        raise RecipeError(f"--copies must be >= 1, got {copies}")
    if workers < 1:
        raise RecipeError(f"--workers must be >= 1, got {workers}")
    if fmt not in FORMATS:
        raise RecipeError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    recipe.pipeline()  # validate ops before any output exists
    dev = resolve_device(device)
    if recipe.batch:
        load_stage_model(recipe)  # a model that cannot load stops the export before it starts
    ds = require_images(scan(src, check_files=False))
    out_r = check_output_folder(src, out)
    check_writable(out_r)
    remove_temp_files(out_r)
    cancel = cancel or CancelToken()
    classes = list(ds.classes) or ["unlabelled"]
    batch = BatchContext(tuple((it.path, it.label) for it in ds.items), len(classes)) if recipe.batch else None

    plan = plan_outputs(ds.items, copies, fmt)
    partial_path = out_r / PARTIAL
    claim_output_folder(out_r, STATE, _fingerprint(recipe, copies, fmt, ds.root, dev))
    done = _read_manifest(out_r / "manifest.jsonl")  # a finished export run again: nothing to redo
    done.update(read_journal(partial_path, require=("records",)))
    summary = ExportSummary(str(out))
    summary.sources = len(ds.items)
    for prob in ds.problems:
        if not prob.reason.endswith("ignored"):
            summary.errors.append({"source": prob.path, "error": prob.reason})

    tasks = []
    for i, it in enumerate(ds.items):
        outs = plan[it.path]
        prev = done.get(it.path)
        if (prev is not None and len(prev["records"]) == len(outs)
                and all(isinstance(r, dict) and is_plain_file(out_r / safe_rel(str(r.get("output", ""))))
                        for r in prev["records"])):
            summary.skipped_existing += len(outs)
            continue
        tasks.append(ItemTask(str(ds.root), str(out_r), i, it.path, it.class_name, outs))
    total = len(ds.items)
    finished = total - len(tasks)
    # keep only the final manifest text per source (not the parsed records): memory stays small
    done = {k: _manifest_text(v["records"]) for k, v in done.items() if isinstance(v.get("records"), list)}
    yield Progress(finished, total, "starting")

    holder: list = []  # the process pool, when one is made
    threads = torch.get_num_threads()
    try:
        with open_journal(partial_path) as partial:
            # one torch thread per worker: small images gain nothing from more, and busy cores lose a lot
            worker_args = (recipe.to_dict(), 1, batch, str(dev), deterministic)
            for res in ordered_results(tasks, workers, ItemWorker, worker_args, holder, preload=[__name__]):
                if "fatal" in res:
                    raise WriteError(res["fatal"])
                if "error" in res:
                    summary.bad += 1
                    summary.errors.append({"source": res["source"], "error": res["error"]})
                else:
                    summary.written += len(res["records"])
                    try:
                        partial.write(json.dumps(res, separators=(",", ":")) + "\n")
                        partial.flush()
                    except OSError as e:
                        raise WriteError(os_error_message(e, out_r)) from None
                    done[res["source"]] = _manifest_text(res["records"])
                finished += 1
                yield Progress(finished, total, res["source"])
                if cancel.cancelled:
                    summary.cancelled = True
                    raise JobCancelled(f"export cancelled after {finished} of {total} images "
                                       f"({summary.written} written); finished images are kept, no partial "
                                       "files remain. Run it again to resume.")
    finally:
        torch.set_num_threads(threads)  # the in-process worker set one thread for this job only
        for ex in holder:  # wait for the (at most 2 x workers) items in flight; each write is atomic
            ex.shutdown(wait=True, cancel_futures=True)
        remove_temp_files(out_r)

    # final files, written atomically in a fixed order so the bytes do not depend on workers
    order = {it.path: i for i, it in enumerate(ds.items)}
    lines = [done[src_rel] for src_rel in sorted(done, key=lambda s: order.get(s, 1 << 60))
             if src_rel in order and done[src_rel]]
    manifest = "\n".join(lines) + "\n" if lines else ""
    if batch is not None:
        _write_labels(out_r, classes, manifest)
    return finish_export(out_r, recipe, summary, partial_path, manifest)


def _write_labels(out_r: Path, classes: list[str], manifest: str) -> None:
    """labels.csv of a batch-stage export: the soft label of every output, in manifest order."""
    header = "file," + ",".join(_csv_field(c) for c in classes)
    rows = []
    for line in manifest.splitlines():
        rec = json.loads(line)
        rows.append(_csv_field(rec["output"]) + "," + ",".join(f"{v:.6f}" for v in rec["label"]))
    try:
        atomic_write_bytes(out_r / "labels.csv", ("\n".join([header] + rows) + "\n").encode())
    except OSError as e:
        raise WriteError(os_error_message(e, out_r)) from None


def _csv_field(s: str) -> str:
    s = str(s)
    if any(ch in s for ch in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def finish_export(out_r: Path, recipe: Recipe, summary: ExportSummary, partial_path: Path,
                  manifest: str) -> ExportSummary:
    """The last step of an export: write manifest.jsonl, errors.jsonl and recipe.yaml atomically, then drop
    the resume journal. Only a finished export has a manifest."""
    errs = sorted(summary.errors, key=lambda e: e["source"])
    used = recipe.copy()
    used.extra["augstudio_version"] = __version__
    try:
        atomic_write_bytes(out_r / "manifest.jsonl", manifest.encode())
        atomic_write_bytes(out_r / "errors.jsonl",
                           "".join(json.dumps(e, sort_keys=True) + "\n" for e in errs).encode())
        used.save(out_r / "recipe.yaml")
    except OSError as e:
        raise WriteError(os_error_message(e, out_r)) from None
    try:
        partial_path.unlink()
    except FileNotFoundError:
        pass
    summary.bad = len(errs)
    summary.errors = errs
    return summary


def summary_dict(s: ExportSummary) -> dict:
    return asdict(s)
