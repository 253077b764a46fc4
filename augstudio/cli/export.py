"""augstudio export SRC --recipe R --out DST [--copies N] [--seed S] [--workers W] [--format png|jpg|same]"""

from __future__ import annotations

import sys

from augstudio.core.base.errors import JobCancelled
from augstudio.core.base.jobs import run_with_tqdm

ORDER = 10


def add_parser(sub) -> str:
    p = sub.add_parser("export", help="write an augmented copy of a dataset, with a manifest",
                       description="Apply a recipe to every image of SRC and write DST in the same class layout, "
                                   "plus manifest.jsonl, errors.jsonl and recipe.yaml. Re-running resumes.")
    p.add_argument("src", help="source dataset folder (ImageFolder layout or flat); never written")
    p.add_argument("--recipe", "-r", required=True, help="recipe file (.yaml or .json)")
    p.add_argument("--out", "-o", required=True, help="output folder (created; must not be inside SRC)")
    p.add_argument("--copies", "-n", type=int, default=1, help="augmented copies per image (default 1)")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    p.add_argument("--workers", "-j", type=int, default=1, help="worker processes (results do not depend on it)")
    p.add_argument("--format", choices=("png", "jpg", "same"), default="png",
                   help="output format; 'same' keeps the source's (palette images are always PNG)")
    p.add_argument("--device", default="cpu",
                   help="where the recipe's steps run: cpu (default), cuda, mps or auto (CUDA, else MPS, else CPU)")
    return "export"


def run(args) -> int:
    from augstudio.core.workflows.export import export_job  # deferred: torch

    job = export_job(args.src, args.recipe, args.out, copies=args.copies, seed=args.seed,
                     workers=args.workers, fmt=args.format, device=args.device)
    last = {"done": 0, "total": 0}

    try:
        summary = run_with_tqdm(_forward(job, last), desc="export")
    except KeyboardInterrupt:
        job.close()
        print(f"augstudio export: interrupted after {last['done']} of {last['total']} images; no partial files "
              "were left. Run the same command again to resume.", file=sys.stderr)
        return 1
    except JobCancelled:
        raise
    print(summary.line())
    return 0


def _forward(job, last):
    """Pass the job through, remembering how far it got (for the interrupt message)."""
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        last["done"], last["total"] = p.done, p.total
        yield p
