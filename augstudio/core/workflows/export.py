"""The export job: apply a recipe to every image of a dataset and write an augmented copy of it.

Layout of the output folder::

    DST/<class>/<stem>__<copy>.<ext>   augmented images (same class layout as the source)
    DST/manifest.jsonl                 one line per output: source, class, copy, applied params of each step
    DST/errors.jsonl                   one line per source file that was skipped, with the reason
    DST/recipe.yaml                    the recipe used (with the seed and the augstudio version)
    DST/.augstudio-export.json         what decides the bytes (recipe, copies, format, source): a re-run
                                       resumes only when it matches, so two exports never mix

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

from augstudio.core.base.errors import (
    AugstudioError,
    ImageError,
    JobCancelled,
    OutputError,
    RecipeError,
    WriteError,
)
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.io.dataset import Item, require_images, scan
from augstudio.core.io.images import atomic_write_bytes, encode, read_image, remove_temp_files
from augstudio.core.io.journal import read_journal

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


def check_output_folder(src: Path, out: Path, what: str = "source folder") -> Path:
    """Resolve ``out`` (following symlinks) and refuse places that would touch the source (named ``what``
    in the message: export's source folder, distillation's unlabelled folder)."""
    src_r = Path(src).resolve()
    out_r = Path(out).resolve()
    if out_r == src_r or _is_within(out_r, src_r):
        raise OutputError(f"output folder {out} is inside the {what} {src}: augstudio never writes into "
                          "the source dataset. Choose an output folder outside it.")
    if _is_within(src_r, out_r):
        raise OutputError(f"output folder {out} contains the {what} {src}; choose a separate, empty or "
                          "new folder so the source can never be overwritten.")
    return out_r


def _is_plain_file(p: Path) -> bool:
    """A finished output: a regular file, not a link someone put in its place."""
    import stat

    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def safe_rel(rel: str) -> str:
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
        plan[it.path] = tuple((c, safe_rel(f"{base}__{c}.{'jpg' if ext == 'jpeg' else ext}"), ext)
                              for c in range(copies))
    return plan


# -- worker side (runs in this process or in a worker process) ------------------------------------------
_worker_recipe: Recipe | None = None
_worker_pipeline = None


def _watch_parent(pid: int, every_s: float = 0.25) -> None:
    """End this worker soon after the process that runs the export is gone (killed with SIGKILL, say).

    A killed parent cannot shut its pool down, and a forkserver's workers are not its children, so
    they would otherwise linger (holding the terminal's pipes) until they next read a task.
    """
    import threading
    import time

    def gone() -> bool:
        try:  # Linux: a killed parent may linger as a zombie until reaped, and a zombie still "exists"
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
        except FileNotFoundError:
            return True
        except (OSError, IndexError):
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False

    def watch():
        while True:
            time.sleep(every_s)
            if gone():
                os._exit(3)

    threading.Thread(target=watch, name="augstudio-parent-watch", daemon=True).start()


def _init_worker(recipe_dict: dict, threads: int | None, in_subprocess: bool = False,
                 parent_pid: int | None = None) -> None:
    global _worker_recipe, _worker_pipeline
    if in_subprocess:
        import signal

        # Ctrl-C reaches the whole process group; only the main process decides what to do with it, and
        # waits for the items in flight (each write is atomic), so workers must not die half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if parent_pid is not None:
            _watch_parent(parent_pid)
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
        out_root = Path(task.out_root)
        for copy, rel_out, fmt in task.outputs:
            out, steps = _worker_pipeline.run(pic, _worker_recipe.seed, task.rel, copy)
            if out.kind == "categorical" and fmt != "png":
                fmt = "png"  # palette images keep their categories only in PNG (and the name says so)
                rel_out = str(PurePosixPath(rel_out).with_suffix(".png"))
            data = encode(out, fmt)
            dest = out_root / safe_rel(rel_out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not _is_within(dest.parent.resolve(), out_root):
                # a symlinked sub-folder placed in the output folder must not carry writes elsewhere
                return {"source": task.rel, "error": f"output folder {dest.parent} is a link that leads "
                        f"outside {out_root}; remove the link. Nothing was written for this image."}
            atomic_write_bytes(dest, data)
            records.append({"output": rel_out, "source": task.rel, "class": task.class_name, "copy": copy,
                            "size": list(out.size), "steps": steps})
    except (RecipeError, ImageError) as e:
        return {"source": task.rel, "error": str(e)}
    except OutputError as e:
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


def _fingerprint(recipe: Recipe, copies: int, fmt: str, src: Path) -> dict:
    """What decides the bytes of an export; a resume is allowed only into a folder made with the same."""
    from augstudio.core.base.version import __version__

    fp = {"augstudio_export": 1, "augstudio": __version__, "source": str(Path(src).resolve()),
          "copies": copies, "format": fmt, "recipe": recipe.to_dict()}
    return json.loads(json.dumps(fp))


def _claim_output_folder(out: Path, fp: dict) -> None:
    """Write the export's fingerprint, or check it against the one already there (resume)."""
    path = out / STATE
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == fp:
            return
        changed = sorted(k for k in fp if not isinstance(old, dict) or old.get(k) != fp[k])
        raise OutputError(f"output folder {out} holds an export made with a different "
                          f"{', '.join(changed) or 'setup'}; resuming into it would mix two exports. Choose a "
                          "new output folder, or delete this one to start again.")
    try:
        atomic_write_bytes(path, (json.dumps(fp, sort_keys=True, indent=1) + "\n").encode("utf-8"))
    except OSError as e:
        raise OutputError(_os_error_message(e, out)) from None


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        from augstudio.core.io import images as _images

        probe = out / f".augstudio-write-test.{os.getpid()}.tmp"
        _images._write_file(probe, b"")  # the same write path as the outputs
        probe.unlink()
    except OSError as e:
        raise OutputError(_os_error_message(e, out)) from None  # a bad choice of folder: exit code 2


def _executor(workers: int, recipe_dict: dict):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["torch", "augstudio.core.workflows.export", "augstudio.core.engine.pipeline"])
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(recipe_dict, 1, True, os.getpid()))


def _results_in_order(tasks: list, workers: int, recipe_dict: dict, holder: list):
    """Results of ``_process`` over ``tasks``, in task order.

    One worker: in this process. More: a process pool fed a window of ``2 x workers`` tasks, so a
    cancel or Ctrl-C waits for at most the items in flight; a crashed worker (killed, out of memory)
    ends the job with a clear error instead of a hang.
    """
    if workers == 1 or len(tasks) <= 1:
        _init_worker(recipe_dict, None)
        for t in tasks:
            yield _process(t)
        return
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    ex = _executor(min(workers, len(tasks)), recipe_dict)
    holder.append(ex)
    window: deque = deque()
    it = iter(tasks)
    for t in it:
        window.append(ex.submit(_process, t))
        if len(window) >= 2 * workers:
            break
    while window:
        fut = window.popleft()
        try:
            res = fut.result()
        except BrokenProcessPool:
            raise OutputError("a worker process died (killed, or out of memory); finished images are kept. "
                              "Run the same command again to resume, with fewer --workers if memory is "
                              "short.") from None
        nxt = next(it, None)
        if nxt is not None:
            window.append(ex.submit(_process, nxt))
        yield res


def _journal_open(path: Path):
    """Open the resume journal for appending; a line cut short by a kill is ended first."""
    try:
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                with open(path, "ab") as f:
                    f.write(b"\n")
        return open(path, "a", encoding="utf-8")
    except OSError as e:
        raise WriteError(_os_error_message(e, path.parent)) from None


def export_job(src, recipe, out, copies: int = 1, seed: int | None = None, workers: int = 1,
               fmt: str = "png", cancel: CancelToken | None = None):
    """Generator job: yields Progress per source image; returns an ExportSummary.

    Raises OutputError / DatasetError / RecipeError before any work when the arguments are bad.
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
    ds = require_images(scan(src, check_files=False))
    out_r = check_output_folder(src, out)
    check_writable(out_r)
    remove_temp_files(out_r)
    cancel = cancel or CancelToken()

    if recipe.batch:
        from augstudio.core.engine.batch_stage import export_batch_stage

        result = yield from export_batch_stage(ds, recipe, out_r, copies=copies, workers=workers, fmt=fmt,
                                               cancel=cancel)
        return result

    plan = plan_outputs(ds.items, copies, fmt)
    partial_path = out_r / PARTIAL
    _claim_output_folder(out_r, _fingerprint(recipe, copies, fmt, ds.root))
    done = _read_manifest(out_r / "manifest.jsonl")  # a finished export run again: nothing to redo
    done.update(read_journal(partial_path, require=("records",)))
    summary = ExportSummary(str(out))
    summary.sources = len(ds.items)
    for prob in ds.problems:
        if not prob.reason.endswith("ignored"):
            summary.errors.append({"source": prob.path, "error": prob.reason})

    tasks = []
    for it in ds.items:
        outs = plan[it.path]
        prev = done.get(it.path)
        if (prev is not None and len(prev["records"]) == len(outs)
                and all(isinstance(r, dict) and _is_plain_file(out_r / safe_rel(str(r.get("output", ""))))
                        for r in prev["records"])):
            summary.skipped_existing += len(outs)
            continue
        tasks.append(_Task(str(ds.root), str(out_r), it.path, it.class_name, outs))
    total = len(ds.items)
    finished = total - len(tasks)
    # keep only the final manifest text per source (not the parsed records): memory stays small
    done = {k: _manifest_text(v["records"]) for k, v in done.items() if isinstance(v.get("records"), list)}
    yield Progress(finished, total, "starting")

    recipe_dict = recipe.to_dict()
    holder: list = []  # the process pool, when one is made
    try:
        with _journal_open(partial_path) as partial:
            for res in _results_in_order(tasks, workers, recipe_dict, holder):
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
                        raise WriteError(_os_error_message(e, out_r)) from None
                    done[res["source"]] = _manifest_text(res["records"])
                finished += 1
                yield Progress(finished, total, res["source"])
                if cancel.cancelled:
                    summary.cancelled = True
                    raise JobCancelled(f"export cancelled after {finished} of {total} images "
                                       f"({summary.written} written); finished images are kept, no partial "
                                       "files remain. Run it again to resume.")
    finally:
        for ex in holder:  # wait for the (at most 2 x workers) items in flight; each write is atomic
            ex.shutdown(wait=True, cancel_futures=True)
        remove_temp_files(out_r)

    # final files, written atomically in a fixed order so the bytes do not depend on workers
    order = {it.path: i for i, it in enumerate(ds.items)}
    lines = [done[src_rel] for src_rel in sorted(done, key=lambda s: order.get(s, 1 << 60))
             if src_rel in order and done[src_rel]]
    return finish_export(out_r, recipe, summary, partial_path, "\n".join(lines) + "\n" if lines else "")


def finish_export(out_r: Path, recipe: Recipe, summary: ExportSummary, partial_path: Path,
                  manifest: str) -> ExportSummary:
    """The last step of every export (plain or with a batch stage): write manifest.jsonl, errors.jsonl and
    recipe.yaml atomically, then drop the resume journal. Only a finished export has a manifest."""
    from augstudio.core.base.version import __version__

    errs = sorted(summary.errors, key=lambda e: e["source"])
    used = recipe.copy()
    used.extra["augstudio_version"] = __version__
    try:
        atomic_write_bytes(out_r / "manifest.jsonl", manifest.encode())
        atomic_write_bytes(out_r / "errors.jsonl",
                           "".join(json.dumps(e, sort_keys=True) + "\n" for e in errs).encode())
        used.save(out_r / "recipe.yaml")
    except OSError as e:
        raise WriteError(_os_error_message(e, out_r)) from None
    try:
        partial_path.unlink()
    except FileNotFoundError:
        pass
    summary.bad = len(errs)
    summary.errors = errs
    return summary


def summary_dict(s: ExportSummary) -> dict:
    return asdict(s)
