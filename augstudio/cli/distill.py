"""augstudio distill --model M --unlabeled DIR --out DST [--tta RECIPE] [--threshold T] [--device D]"""

from __future__ import annotations

import sys

from augstudio.core.base.jobs import run_with_tqdm

from .tta import add_model_args, check_batch_size, load_classifier

ORDER = 61


def add_parser(sub) -> str:
    p = sub.add_parser("distill", help="auto-label unlabelled images with a model over TTA views",
                       description="Data distillation: ensemble a model's predictions over the TTA views of each "
                                   "unlabelled image; copy the images whose confidence reaches the threshold into "
                                   "DST/<class>/ and write DST/labels.csv (soft label, confidence and source of "
                                   "every image). Re-running resumes.")
    add_model_args(p)
    p.add_argument("--unlabeled", "-u", required=True, help="folder of unlabelled images (never written)")
    p.add_argument("--out", "-o", required=True, help="output folder (must not be inside --unlabeled)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="keep images whose merged confidence is at least this (0..1, default 0.9)")
    return "distill"


def run(args) -> int:
    from augstudio.core.workflows.distill import distill_job  # deferred: torch
    from augstudio.core.workflows.tta_views import load_tta  # deferred: torch

    check_batch_size(args)
    tta = load_tta(args.tta)
    clf = load_classifier(args, args.probe_data)
    job = distill_job(args.unlabeled, clf, args.out, tta=tta, threshold=args.threshold, batch_size=args.batch_size)
    try:
        summary = run_with_tqdm(job, desc="distill")
    except KeyboardInterrupt:
        job.close()
        print("augstudio distill: interrupted; no partial files were left. Run the same command again to resume.",
              file=sys.stderr)
        return 1
    for e in summary.errors:
        print(f"skipped {e['source']}: {e['error']}", file=sys.stderr)
    print(summary.line())
    for c, n in summary.per_class.items():
        print(f"  {c}: {n}")
    return 0
