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

With ``fmt="webdataset"`` the images go into WebDataset tar shards instead (``DST/shard-000000.tar`` ...,
see ``export_shards``); manifest.jsonl, errors.jsonl, labels.csv and recipe.yaml are written as above.

``engine="ray"`` runs the same per-item (or per-shard) work as Ray tasks on a cluster or on a Ray started on
this machine (``ray_engine``); the bytes, the manifest, the journal and the resume are those of the local
engine. The output folder must be a path every node and this machine can reach (a shared file system).

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
from augstudio.core.io.webdataset import shard_urls
from augstudio.core.kernels import cv

from .export_items import BatchContext, ItemTask, ItemWorker, load_stage_model
from .export_shards import DEFAULT_SHARD_SIZE, ShardTask, ShardWorker, items_per_shard, plan_shards
from .export_targets import read_export_targets, write_export_targets
from .pool import ordered_results

FORMATS = ("png", "jpg", "same")
WEBDATASET = "webdataset"
ENGINES = ("local", "ray")
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
    shards: int = 0  # --format webdataset: how many shards the export has
    targets: list = field(default_factory=list)  # --targets: the annotation files written
    nodes: int = 0  # --engine ray: how many nodes ran this run's tasks

    def line(self) -> str:
        state = "cancelled" if self.cancelled else "done"
        where = f" on {self.nodes} Ray node{'s' * (self.nodes != 1)}" if self.nodes else ""
        text = (f"export {state}{where}: {self.written} images written, {self.skipped_existing} already there, "
                f"{self.bad} bad source files skipped (see errors.jsonl) -> {self.out}")
        if self.targets:
            text += f" (targets: {', '.join(self.targets)})"
        if self.shards:
            text += (f" ({self.shards} WebDataset shard{'s' * (self.shards != 1)}: "
                     f"{Path(self.out) / shard_urls(self.shards)})")
        return text


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


def _fingerprint(recipe: Recipe, copies: int, fmt: str, src: Path, device, shards: dict | None = None,
                 targets: str | None = None) -> dict:
    """What decides the bytes of an export; a resume is allowed only into a folder made with the same."""
    fp = {"augstudio_export": 1, "augstudio": __version__, "source": str(Path(src).resolve()),
          "copies": copies, "format": fmt, "recipe": recipe.to_dict()}
    if shards:  # --format webdataset: the shard size and the image format inside the shards
        fp.update(shards)
    if targets:  # --targets: the images are the annotated ones, with records the targets are replayed from
        fp["targets"] = targets
    if device.type != "cpu":  # another device rounds differently (within a grey level): not resumable across
        fp["device"] = device.type
    else:  # so does a CPU whose OpenCV runs other kernels (IPP or its own)
        fp["cpu_kernels"] = cv.rounding()
    return json.loads(json.dumps(fp))


def export_job(src, recipe, out, copies: int = 1, seed: int | None = None, workers: int | None = 1,
               fmt: str = "png", cancel: CancelToken | None = None, device: str = "cpu",
               deterministic: bool = True, engine: str = "local", address: str | None = None,
               shard_size: int = DEFAULT_SHARD_SIZE, shard_format: str = "png", gpus_per_task: float | None = None,
               strict: bool = True, targets: bool = False):
    """Generator job: yields Progress per source image; returns an ExportSummary.

    ``device``: where the recipe's steps run (``cpu``, ``cuda``, ``auto``); images are decoded and encoded
    on the CPU. ``deterministic``: deterministic algorithms where the device needs them (CUDA), so a
    re-run repeats the bytes. ``fmt="webdataset"``: tar shards of ``shard_size`` samples (rounded down to
    whole source images) holding ``shard_format`` images. ``engine="ray"``: Ray tasks on the cluster at
    ``address`` (else ``RAY_ADDRESS``, else a Ray started here with ``workers`` CPUs, all when None); with
    ``device`` cuda each task asks for ``gpus_per_task`` GPUs (default 1). ``strict``: an unknown top-level
    recipe key (a typo such as ``step:``) is an error, not a warning: an export of a recipe that lost its
    steps would write thousands of unaugmented files. ``targets``: export the source's masks, boxes and
    keypoints too (COCO / YOLO / VOC / mask folder, written in the same format; ``export_targets``). Raises OutputError /
    DatasetError / RecipeError / ModelError / ParamError before any work when the arguments are bad.
    """
    src = Path(src)
    out = Path(out)
    recipe = load_recipe(recipe, strict=strict)
    if seed is not None:
        recipe.seed = int(seed)
    if copies < 1:
        raise RecipeError(f"--copies must be >= 1, got {copies}")
    if workers is not None and workers < 1:
        raise RecipeError(f"--workers must be >= 1, got {workers}")
    if fmt not in (*FORMATS, WEBDATASET):
        raise RecipeError(f"--format must be one of {', '.join((*FORMATS, WEBDATASET))}, got {fmt!r}")
    if fmt == WEBDATASET and (shard_size < 1 or shard_format not in FORMATS):
        raise RecipeError(f"--shard-size must be >= 1 (got {shard_size}) and --shard-image one of "
                          f"{', '.join(FORMATS)} (got {shard_format!r})")
    if engine not in ENGINES:
        raise RecipeError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    recipe.pipeline()  # validate ops before any output exists
    session = None
    if engine == "ray":
        check_output_folder(src, out)  # a wrong folder is said before a cluster is started or reached
        from .ray_engine import RaySession, gpus_for  # deferred: ray (optional)

        session = RaySession(address, num_cpus=workers).__enter__()
    try:
        if session is not None:
            dev_type, gpus = gpus_for(device, session.resources())
            dev = torch.device(dev_type)
            gpus = gpus if gpus_per_task is None or not gpus else float(gpus_per_task)
        else:
            dev, gpus = resolve_device(device), 0.0
        run = _Run(src, out, recipe, copies, workers or 1, fmt, cancel or CancelToken(), dev, deterministic,
                   engine, gpus, shard_size, shard_format, targets)
        return (yield from run.go())
    finally:
        if session is not None:
            session.close()


class _Run:
    """One export run, after its arguments were checked: plan, claim, resume, run the units, finish."""

    def __init__(self, src, out, recipe, copies, workers, fmt, cancel, dev, deterministic, engine, gpus,
                 shard_size, shard_format, targets=False):
        self.src, self.out, self.recipe, self.copies, self.workers = src, out, recipe, copies, workers
        self.fmt, self.cancel, self.dev, self.deterministic = fmt, cancel, dev, deterministic
        self.engine, self.gpus = engine, gpus
        self.shards = fmt == WEBDATASET
        self.shard_size, self.shard_format = shard_size, shard_format
        self.targets = targets

    def go(self):
        recipe, copies = self.recipe, self.copies
        if recipe.batch:
            load_stage_model(recipe)  # a model that cannot load stops the export before it starts
        tds = None
        if self.targets:
            tds, ds = read_export_targets(self.src, recipe, self.shards)
            require_images(ds)
        else:
            ds = require_images(scan(self.src, check_files=False))
        out_r = check_output_folder(self.src, self.out)
        check_writable(out_r)
        remove_temp_files(out_r)
        classes = list(ds.classes) or ["unlabelled"]
        batch = (BatchContext(tuple((it.path, it.label) for it in ds.items), len(classes)) if recipe.batch
                 else None)

        plan = plan_outputs(ds.items, copies, self.shard_format if self.shards else self.fmt)
        partial_path = out_r / PARTIAL
        shard_fp = {"shard_size": self.shard_size, "shard_image": self.shard_format} if self.shards else None
        claim_output_folder(out_r, STATE, _fingerprint(recipe, copies, self.fmt, ds.root, self.dev, shard_fp,
                                                          tds.format if tds else None))
        done = _read_manifest(out_r / "manifest.jsonl")  # a finished export run again: nothing to redo
        if self.shards:  # bad items are part of a finished shard: keep their errors with it
            done.update(_read_errors(out_r / "errors.jsonl"))
            done.update(read_journal(partial_path))
        else:
            done.update(read_journal(partial_path, require=("records",)))
        summary = ExportSummary(str(self.out))
        summary.sources = len(ds.items)
        for prob in [*ds.problems, *(tds.problems if tds else ())]:
            if not prob.reason.endswith("ignored"):
                summary.errors.append({"source": prob.path, "error": prob.reason})

        def item_task(i, it):
            return ItemTask(str(ds.root), str(out_r), i, it.path, it.class_name, plan[it.path], tds is not None)

        if self.shards:
            units, pending = self.shard_units(ds, done, summary, item_task)
        else:
            units = []
            for i, it in enumerate(ds.items):
                outs = plan[it.path]
                prev = done.get(it.path)
                if (prev is not None and len(prev["records"]) == len(outs)
                        and all(isinstance(r, dict) and is_plain_file(out_r / safe_rel(str(r.get("output", ""))))
                                for r in prev["records"])):
                    summary.skipped_existing += len(outs)
                    continue
                units.append(item_task(i, it))
            pending = len(units)
        total = len(ds.items)
        finished = total - pending
        # keep only the final manifest text per source (not the parsed records): memory stays small
        done = {k: _manifest_text(v["records"]) for k, v in done.items() if isinstance(v.get("records"), list)}
        yield Progress(finished, total, "starting")

        holder: list = []  # the process pool or the Ray tasks, when there are some
        threads = torch.get_num_threads()
        try:
            with open_journal(partial_path) as partial:
                for res in self.results(units, batch, classes, holder):
                    if "fatal" in res:
                        raise WriteError(res["fatal"])
                    for r in res["items"] if "shard" in res else [res]:
                        if "fatal" in r:
                            raise WriteError(r["fatal"])
                        if "error" in r:
                            summary.bad += 1
                            summary.errors.append({"source": r["source"], "error": r["error"]})
                            if not self.shards:  # a folder export tries a bad item again on a re-run
                                finished += 1
                                continue
                        else:
                            summary.written += len(r["records"])
                            done[r["source"]] = _manifest_text(r["records"])
                        try:
                            partial.write(json.dumps(r, separators=(",", ":")) + "\n")
                            partial.flush()
                        except OSError as e:
                            raise WriteError(os_error_message(e, out_r)) from None
                        finished += 1
                    yield Progress(finished, total, res.get("shard") or res["source"])
                    if self.cancel.cancelled:
                        summary.cancelled = True
                        raise JobCancelled(f"export cancelled after {finished} of {total} images "
                                           f"({summary.written} written); finished images are kept, no partial "
                                           "files remain. Run it again to resume.")
        finally:
            torch.set_num_threads(threads)  # the in-process worker set one thread for this job only
            for ex in holder:  # wait for the items in flight (at most 2 per worker); each write is atomic
                ex.shutdown(wait=True, cancel_futures=True)
                summary.nodes = len(getattr(ex, "nodes", ()))
            remove_temp_files(out_r)

        # final files, written atomically in a fixed order so the bytes do not depend on workers
        order = {it.path: i for i, it in enumerate(ds.items)}
        lines = [done[src_rel] for src_rel in sorted(done, key=lambda s: order.get(s, 1 << 60))
                 if src_rel in order and done[src_rel]]
        manifest = "\n".join(lines) + "\n" if lines else ""
        if batch is not None:
            _write_labels(out_r, classes, manifest)
        if tds is not None:
            try:
                manifest, errors, summary.targets = write_export_targets(out_r, tds, recipe, manifest)
            except OSError as e:
                raise WriteError(os_error_message(e, out_r)) from None
            summary.errors += errors
        return finish_export(out_r, recipe, summary, partial_path, manifest)

    def shard_units(self, ds, done: dict, summary: ExportSummary, item_task) -> tuple[list, int]:
        """The shards still to make (a shard is done when its file exists and every item of it has a
        record or an error from an earlier run), and how many items they hold."""
        units, out_r = [], Path(item_task(0, ds.items[0]).out_root)
        shards = plan_shards(len(ds.items), items_per_shard(self.shard_size, self.copies))
        for name, idx in shards:
            prevs = [done.get(ds.items[i].path) for i in idx]
            if is_plain_file(out_r / name) and all(
                    p is not None and ("error" in p or len(p.get("records", ())) == self.copies) for p in prevs):
                for p in prevs:
                    if "error" in p:
                        summary.errors.append({"source": p["source"], "error": p["error"]})
                    else:
                        summary.skipped_existing += len(p["records"])
                continue
            units.append(ShardTask(name, str(out_r), tuple(item_task(i, ds.items[i]) for i in idx)))
        summary.shards = len(shards)
        return units, sum(len(u.items) for u in units)

    def results(self, units: list, batch, classes: list, holder: list):
        """The results of the units from the chosen engine (the local one yields them in order)."""
        # one torch thread per worker: small images gain nothing from more, and busy cores lose a lot
        worker_args = (self.recipe.to_dict(), 1, batch, str(self.dev), self.deterministic)
        make, args = ItemWorker, worker_args
        if self.shards:
            make, args = ShardWorker, (worker_args, self.copies, tuple(classes))
        if self.engine == "ray":
            from .ray_engine import ray_results  # deferred: ray (optional)

            return ray_results(units, make, args, holder, cpus=1, gpus=self.gpus)
        return ordered_results(units, self.workers, make, args, holder, preload=[__name__])


def _read_errors(path: Path) -> dict[str, dict]:
    """The bad items of an earlier, finished webdataset export (their shards are complete without them)."""
    out: dict[str, dict] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return {}
        if isinstance(rec, dict) and isinstance(rec.get("source"), str) and "error" in rec:
            out[rec["source"]] = {"source": rec["source"], "error": rec["error"]}
    return out


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
