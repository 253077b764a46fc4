"""augstudio tta --model M --data DIR [--tta RECIPE] [--device D] [--json OUT] [--batch-size N]"""

from __future__ import annotations

import json
import sys

from augstudio.core.base.errors import RecipeError
from augstudio.core.base.jobs import run_with_tqdm
from augstudio.core.io.images import atomic_write_bytes

from ._models import MODEL_HELP
from ._models import add_model_args as add_shared_model_args

ORDER = 60


def add_model_args(p) -> None:
    add_shared_model_args(p, required=True, model_help=MODEL_HELP + ", or 'probe' (the probe classifier, trained "
                          "on --probe-data; for tta by default on --data)")
    p.add_argument("--tta", "-t", default="d4",
                   help="TTA recipe file (.yaml/.json) or a preset: identity, mirror, flips, rotations, d4 (default d4)")
    p.add_argument("--batch-size", type=int, default=64, help="images through the model per forward pass")
    p.add_argument("--probe-data", default=None,
                   help="labelled folder to train the probe on with --model probe (tta: default --data; evaluate "
                        "on images the probe did not train on for an honest number)")


def load_classifier(args, data):
    from augstudio.core.workflows.tta import load_classifier_job  # deferred: torch

    job = load_classifier_job(args.model, data=data, device=args.device, allow_code=args.allow_code, arch=args.arch)
    clf = run_with_tqdm(job, desc="probe" if args.model == "probe" else "model")
    print(f"model: {clf.name} ({len(clf.classes)} classes, {clf.device})")
    return clf


def add_parser(sub) -> str:
    p = sub.add_parser("tta", help="accuracy with and without test-time augmentation",
                       description="Evaluate a classifier on a labelled folder (DIR/<class>/<image>) without and "
                                   "with test-time augmentation: accuracy overall and per class, the confusion "
                                   "matrix, and which images TTA fixed or broke.")
    add_model_args(p)
    p.add_argument("--data", "-d", required=True, help="labelled folder in ImageFolder layout (never written)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the full report as JSON here")
    return "tta"


def check_batch_size(args) -> None:
    if args.batch_size < 1:
        raise RecipeError(f"--batch-size must be >= 1, got {args.batch_size}")


def run(args) -> int:
    from augstudio.core.workflows.tta import evaluate_job  # deferred: torch
    from augstudio.core.workflows.tta_views import load_tta  # deferred: torch

    check_batch_size(args)
    tta = load_tta(args.tta)  # bad recipes fail before the model loads
    clf = load_classifier(args, args.probe_data or args.data)
    report = run_with_tqdm(evaluate_job(args.data, clf, tta, batch_size=args.batch_size), desc="tta")
    print(report.table(), end="")
    for s in report.skipped:
        print(f"skipped {s['path']}: {s['error']}", file=sys.stderr)
    if args.json_out:
        atomic_write_bytes(args.json_out, (json.dumps(report.to_dict(), indent=1) + "\n").encode())
        print(f"report written to {args.json_out}")
    return 0
