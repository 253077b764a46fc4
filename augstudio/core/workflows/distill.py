"""Data distillation (Radosavovic et al., 2018): label unlabelled images with one model applied to many
views of each image, ensembling the predictions (the TTA merge rule), and keep the confident ones.

Layout of the output folder::

    DST/<class>/<source path>     kept images (confidence >= threshold), byte-for-byte copies of the source,
                                  filed under the predicted class (ImageFolder layout, ready for training)
    DST/labels.csv                one row per readable source image, kept or not: source, kept, label,
                                  confidence, output, then the soft label p_<class> for every class
    DST/errors.jsonl              one line per source file that could not be read, with the reason
    DST/distill.json              the settings (model, TTA recipe, threshold) and the counts
    DST/distill.journal.jsonl     the work log that makes a re-run resume (kept; a finished run re-run
                                  does nothing)

Guarantees: the source folder is never written; every file is written atomically (temporary name +
rename), and temporary files left by a killed run are removed on the next run; a re-run with the same
settings skips finished images; a bad image file is skipped and reported, never fatal. Re-running into
the same folder with different settings is refused (the kept images would mix two labellings).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from augstudio.core.base.errors import OutputError, RecipeError
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.core.io.dataset import require_images, scan
from augstudio.core.io.images import atomic_write_bytes, remove_temp_files
from augstudio.core.io.journal import read_journal
from augstudio.core.io.outputs import check_output_folder, check_writable, safe_rel

from .tta import Classifier, predict_views, read_pictures
from .tta_views import load_tta

JOURNAL = "distill.journal.jsonl"
SETTINGS = "distill.json"


@dataclass
class DistillSummary:
    out: str
    sources: int = 0
    labelled: int = 0  # readable images given a label (kept or not)
    kept: int = 0
    resumed: int = 0  # already done by an earlier run
    bad: int = 0
    threshold: float = 0.9
    per_class: dict = field(default_factory=dict)  # kept images per class
    errors: list = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.kept / self.labelled if self.labelled else 0.0

    def line(self) -> str:
        return (f"distill done: {self.kept} of {self.labelled} images kept at confidence >= {self.threshold:g} "
                f"({self.coverage:.1%}), {self.resumed} done earlier, {self.bad} bad files skipped -> {self.out}")


def _safe_class_dir(name: str) -> str:
    bad = name in ("", ".", "..") or any(ch in name for ch in "/\\\x00")
    if bad:
        raise OutputError(f"class name {name!r} cannot be a folder name; rename the model's classes")
    return name


def distill_job(unlabeled, clf: Classifier, out, tta=None, threshold: float = 0.9, batch_size: int = 64,
                cancel: CancelToken | None = None):
    """Job: label every image under ``unlabeled`` with ``clf`` over the TTA views; copy those whose merged
    confidence is at least ``threshold`` into ``out/<class>/``; write labels.csv. Returns a DistillSummary.

    ``unlabeled`` may be a flat folder or an ImageFolder (its folder names are ignored as labels but kept in
    the output path).
    """
    src = Path(unlabeled)
    out = Path(out)
    tta = load_tta(tta)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0.0 <= threshold <= 1.0:
        raise RecipeError(f"--threshold must be a confidence within 0 .. 1, got {threshold!r}")
    threshold = float(threshold)
    cancel = cancel or CancelToken()
    ds = require_images(scan(src, check_files=False))
    class_dirs = [_safe_class_dir(c) for c in clf.classes]
    out_r = check_output_folder(src, out, what="unlabelled folder")
    check_writable(out_r)
    remove_temp_files(out_r)

    settings = {"model": clf.name, "classes": list(clf.classes), "tta": tta.to_dict(), "threshold": threshold,
                "source": str(src.resolve())}
    settings_path = out_r / SETTINGS
    journal_path = out_r / JOURNAL
    if journal_path.exists() and settings_path.exists():
        try:
            old = json.loads(settings_path.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError):
            old = None
        if old != settings:
            raise OutputError(f"{out} holds a distillation made with other settings (model, views, threshold or "
                              "source differ); use a new output folder, or delete that one to start over")
    atomic_write_bytes(settings_path, (json.dumps({"settings": settings}, indent=2) + "\n").encode())

    done = read_journal(journal_path)
    summary = DistillSummary(str(out), threshold=threshold)
    summary.sources = len(ds.items)
    for prob in ds.problems:
        if not prob.reason.endswith("ignored"):
            summary.errors.append({"source": prob.path, "error": prob.reason})
    todo = []
    for it in ds.items:
        rec = done.get(it.path)
        # done: labelled and (if kept) its copy is there; files that failed before are tried again
        if rec is not None and "error" not in rec and (not rec.get("output") or (out_r / rec["output"]).exists()):
            summary.resumed += 1
            continue
        todo.append(it)
    total = len(ds.items)
    finished = total - len(todo)
    yield Progress(finished, total, "starting")
    per_chunk = max(1, batch_size // (len(tta.views)))
    with open(journal_path, "a+", encoding="utf-8") as journal:
        if journal.tell() > 0:  # a killed run may have left half a line: start on a fresh one
            journal.seek(journal.tell() - 1)
            if journal.read(1) != "\n":
                journal.write("\n")
        for s in range(0, len(todo), per_chunk):
            cancel.check(f"distillation stopped after {finished} of {total} images; run it again to resume")
            items = todo[s:s + per_chunk]
            skipped: list = []
            chunk = read_pictures(ds, items, skipped)
            for bad in skipped:
                journal.write(json.dumps({"source": bad["path"], "error": bad["error"]}) + "\n")
            if chunk:
                _plain, _views, merged = predict_views(clf, [p for _, p in chunk], tta, batch_size)
                for (it, _pic), pm in zip(chunk, merged):
                    k = int(pm.argmax())
                    conf = float(pm[k])
                    rec = {"source": it.path, "label": clf.classes[k], "confidence": round(conf, 6),
                           "soft": [round(float(v), 6) for v in pm], "output": None}
                    if conf >= threshold:
                        rel = safe_rel(f"{class_dirs[k]}/{it.path}")
                        dest = out_r / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        try:
                            data = ds.abspath(it).read_bytes()
                        except OSError as e:
                            journal.write(json.dumps({"source": it.path, "error": f"cannot read: {e.strerror or e}"})
                                          + "\n")
                            continue
                        atomic_write_bytes(dest, data)
                        rec["output"] = rel
                    journal.write(json.dumps(rec, separators=(",", ":")) + "\n")
            journal.flush()
            finished += len(items)
            yield Progress(finished, total, items[-1].path)

    # final files from the journal, in dataset order
    done = read_journal(journal_path)
    order = {it.path: i for i, it in enumerate(ds.items)}
    rows = sorted((r for r in done.values() if r["source"] in order), key=lambda r: order[r["source"]])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "kept", "label", "confidence", "output"] + [f"p_{c}" for c in clf.classes])
    per_class = {c: 0 for c in clf.classes}
    for r in rows:
        if "error" in r:
            summary.errors.append({"source": r["source"], "error": r["error"]})
            continue
        kept = r.get("output") is not None
        summary.labelled += 1
        if kept:
            summary.kept += 1
            per_class[r["label"]] = per_class.get(r["label"], 0) + 1
        w.writerow([r["source"], int(kept), r["label"], f"{r['confidence']:.6f}", r.get("output") or ""]
                   + [f"{v:.6f}" for v in r["soft"]])
    atomic_write_bytes(out_r / "labels.csv", buf.getvalue().encode("utf-8"))
    errs = sorted({e["source"]: e for e in summary.errors}.values(), key=lambda e: e["source"])
    atomic_write_bytes(out_r / "errors.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in errs).encode())
    summary.errors = errs
    summary.bad = len(errs)
    summary.per_class = per_class
    # the file describes the result, not this run: where it was written and what a re-run skipped stay out,
    # so an interrupted-and-resumed distillation gives the same bytes as an uninterrupted one
    result = {k: v for k, v in summary_dict(summary).items() if k not in ("out", "resumed")}
    atomic_write_bytes(settings_path, (json.dumps({"settings": settings, "summary": result},
                                                  indent=2) + "\n").encode())
    remove_temp_files(out_r)
    return summary


def summary_dict(s: DistillSummary) -> dict:
    d = asdict(s)
    d["coverage"] = s.coverage
    return d


def read_labels(out) -> list[dict]:
    """labels.csv as dicts (confidence and soft label as floats, kept as bool)."""
    with open(Path(out) / "labels.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["kept"] = r["kept"] == "1"
        r["confidence"] = float(r["confidence"])
        r["soft"] = {k[2:]: float(v) for k, v in r.items() if isinstance(k, str) and k.startswith("p_")}
    return rows

