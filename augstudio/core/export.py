"""The export job: apply a recipe to every image of a dataset and write an augmented copy of it.

Layout of the output folder::

    DST/<class>/<stem>__<copy>.<ext>   augmented images (same class layout as the source)
    DST/manifest.jsonl                 one line per output: source, class, copy, applied params of each step
    DST/errors.jsonl                   one line per source file that was skipped, with the reason
    DST/recipe.yaml                    the recipe used (with the seed and the augstudio version)

Guarantees: outputs are byte-identical for the same recipe and seed whatever the worker count; every
file is written atomically (temporary name + rename); re-running the same command resumes and skips
finished outputs; nothing is written inside the source folder; a bad source file is skipped and
reported, never fatal.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from .dataset import Item, scan
from .errors import AugstudioError, ImageError, JobCancelled, OutputError, RecipeError
from .images import atomic_write_bytes, encode, read_image
from .jobs import CancelToken, Progress
from .recipe import Recipe, load_recipe

FORMATS = ("png", "jpg", "same")
_SAME_OK = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".bmp": "bmp", ".tif": "tiff",
            ".tiff": "tiff"}
PARTIAL = "manifest.partial.jsonl"


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


@dataclass(frozen=True)
class _Task:
    src_root: str
    out_root: str
    rel: str
    class_name: str | None
    outputs: tuple  # (copy, rel_out, fmt) per copy


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_output_folder(src: Path, out: Path) -> Path:
    """Resolve ``out`` (following symlinks) and refuse places that would touch the source."""
    src_r = src.resolve()
    out_r = out.resolve()
    if out_r == src_r or _is_within(out_r, src_r):
        raise OutputError(f"output folder {out} is inside the source folder {src}: augstudio never writes into "
                          "the source dataset. Choose an output folder outside it.")
    if _is_within(src_r, out_r):
        raise OutputError(f"output folder {out} contains the source folder {src}; choose a separate, empty or "
                          "new folder so the source can never be overwritten.")
    return out_r


def _safe_rel(rel: str) -> str:
    """Refuse relative output paths that could leave the output folder."""
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\\" in rel or "\x00" in rel:
        raise OutputError(f"refusing unsafe output path {rel!r} (it could escape the output folder)")
    return rel


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
        plan[it.path] = tuple((c, _safe_rel(f"{base}__{c}.{'jpg' if ext == 'jpeg' else ext}"), ext)
                              for c in range(copies))
    return plan


# -- worker side (runs in this process or in a worker process) ------------------------------------------
_worker_recipe: Recipe | None = None
_worker_pipeline = None


def _init_worker(recipe_dict: dict, threads: int | None) -> None:
    global _worker_recipe, _worker_pipeline
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _worker_recipe = Recipe.from_dict(recipe_dict)
    _worker_pipeline = _worker_recipe.pipeline()


def _process(task: _Task) -> dict:
    """Decode one source, write its copies; returns records or an error. Never raises for bad input."""
    try:
        pic = read_image(Path(task.src_root) / task.rel)
    except ImageError as e:
        return {"source": task.rel, "error": e.cause}
    except AugstudioError as e:
        return {"source": task.rel, "error": str(e)}
    records = []
    try:
        for copy, rel_out, fmt in task.outputs:
            out, steps = _worker_pipeline.run(pic, _worker_recipe.seed, task.rel, copy)
            if out.kind == "categorical" and fmt != "png":
                fmt = "png"  # palette images keep their categories only in PNG
            data = encode(out, fmt)
            dest = Path(task.out_root) / rel_out
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest, data)
            records.append({"output": rel_out, "source": task.rel, "class": task.class_name, "copy": copy,
                            "size": list(out.size), "steps": steps})
    except RecipeError as e:
        return {"source": task.rel, "error": str(e)}
    except OSError as e:
        return {"source": task.rel, "fatal": _os_error_message(e, task.out_root)}
    except Exception as e:  # noqa: BLE001 - one broken item must not end the export
        return {"source": task.rel, "error": f"{type(e).__name__}: {e}"}
    return {"source": task.rel, "records": records}


def _os_error_message(e: OSError, out_root) -> str:
    import errno

    if e.errno == errno.ENOSPC:
        return (f"disk full while writing into {out_root}: free some space and run the same command again; "
                "finished images are kept and the export resumes")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"cannot write into {out_root}: {e.strerror}. Choose a writable output folder."
    return f"cannot write into {out_root}: {e.strerror or e}"


# -- the job --------------------------------------------------------------------------------------------
def _read_partial(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and "source" in rec and "records" in rec:
                done[rec["source"]] = rec
    return done


def _remove_temp_files(out: Path) -> None:
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(dirpath, name))
                except OSError:
                    pass


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".augstudio-write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(_os_error_message(e, out)) from None


def _pool(workers: int, recipe_dict: dict):
    import multiprocessing as mp

    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["augstudio.core.export"])
    return ctx.Pool(workers, initializer=_init_worker, initargs=(recipe_dict, 1))


def export_job(src, recipe, out, copies: int = 1, seed: int | None = None, workers: int = 1,
               fmt: str = "png", cancel: CancelToken | None = None):
    """Generator job: yields Progress per source image; returns an ExportSummary.

    Raises OutputError / DatasetError / RecipeError before any work when the arguments are bad.
    """
    from .. import __version__

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
    ds = scan(src, check_files=False)
    out_r = check_output_folder(src, out)
    _check_writable(out_r)
    _remove_temp_files(out_r)
    cancel = cancel or CancelToken()

    if recipe.batch:
        from .batch_stage import export_batch_stage

        result = yield from export_batch_stage(ds, recipe, out_r, copies=copies, workers=workers, fmt=fmt,
                                               cancel=cancel)
        return result

    plan = plan_outputs(ds.items, copies, fmt)
    partial_path = out_r / PARTIAL
    done = _read_partial(partial_path)
    summary = ExportSummary(str(out))
    summary.sources = len(ds.items)
    for prob in ds.problems:
        if not prob.reason.endswith("ignored"):
            summary.errors.append({"source": prob.path, "error": prob.reason})

    tasks = []
    for it in ds.items:
        outs = plan[it.path]
        prev = done.get(it.path)
        if prev is not None and all((out_r / o[1]).exists() for o in outs):
            summary.skipped_existing += len(outs)
            continue
        tasks.append(_Task(str(ds.root), str(out_r), it.path, it.class_name, outs))
    total = len(ds.items)
    finished = total - len(tasks)
    yield Progress(finished, total, "starting")

    recipe_dict = recipe.to_dict()
    pool = None
    try:
        if workers == 1 or len(tasks) <= 1:
            _init_worker(recipe_dict, None)
            results = map(_process, tasks)
        else:
            pool = _pool(min(workers, len(tasks)), recipe_dict)
            results = pool.imap(_process, tasks, chunksize=1)
        with open(partial_path, "a", encoding="utf-8") as partial:
            for res in results:
                if "fatal" in res:
                    raise OutputError(res["fatal"])
                if "error" in res:
                    summary.bad += 1
                    summary.errors.append({"source": res["source"], "error": res["error"]})
                else:
                    summary.written += len(res["records"])
                    partial.write(json.dumps(res, separators=(",", ":")) + "\n")
                    partial.flush()
                    done[res["source"]] = res
                finished += 1
                yield Progress(finished, total, res["source"])
                if cancel.cancelled:
                    summary.cancelled = True
                    raise JobCancelled(f"export cancelled after {finished} of {total} images; run it again "
                                       "to resume")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _remove_temp_files(out_r)

    # final files, written atomically in a fixed order so the bytes do not depend on workers
    order = {it.path: i for i, it in enumerate(ds.items)}
    lines = []
    for src_rel in sorted(done, key=lambda s: order.get(s, 1 << 60)):
        if src_rel in order:
            lines.extend(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in done[src_rel]["records"])
    atomic_write_bytes(out_r / "manifest.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
    errs = sorted(summary.errors, key=lambda e: e["source"])
    atomic_write_bytes(out_r / "errors.jsonl",
                       "".join(json.dumps(e, sort_keys=True) + "\n" for e in errs).encode())
    used = recipe.copy()
    used.extra["augstudio_version"] = __version__
    used.save(out_r / "recipe.yaml")
    try:
        partial_path.unlink()
    except FileNotFoundError:
        pass
    summary.bad = len(errs)
    summary.errors = errs
    return summary


def summary_dict(s: ExportSummary) -> dict:
    return asdict(s)
