"""augstudio evaluate --data DIR --recipes a.yaml b.yaml ... [--model probe|ARCH] [--epochs N] [--seeds S]
[--val-fraction F] [--device D] [--threads T] [--engine local|ray [--address A]] [--report OUT]"""

from __future__ import annotations

import sys

from augstudio.core.base.jobs import run_with_tqdm

ORDER = 60


def add_parser(sub) -> str:
    p = sub.add_parser(
        "evaluate", help="does this recipe help? train with and without each recipe and compare",
        description="Train the same model with no augmentation and with each recipe, on a stratified train/"
                    "validation split fixed by --split-seed, for each seed; report validation accuracy, NLL, "
                    "ECE (15 bins), reliability diagrams, per-class accuracy and training curves, mean ± std "
                    "over seeds, and a paired comparison of each recipe against no augmentation.")
    p.add_argument("--data", "-d", required=True, help="labelled dataset folder (one sub-folder per class)")
    p.add_argument("--recipes", "-r", nargs="*", default=[], metavar="RECIPE",
                   help="recipe files (.yaml / .json); 'no augmentation' is always added as the first arm")
    p.add_argument("--model", "-m", default="probe",
                   help="'probe' (a small CNN, default) or a torchvision architecture name (random init)")
    p.add_argument("--epochs", "-e", type=int, default=10, help="training epochs per run (default 10)")
    p.add_argument("--seeds", "-s", type=int, default=3,
                   help="number of seeds (0..S-1); each arm is trained once per seed (default 3)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share per class (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input side in pixels (default: the images' size when all share one, up to 128; "
                        "else 64)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    p.add_argument("--lr", type=float, default=5e-3, help="peak AdamW learning rate of the one-cycle schedule (default 0.005)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps or auto (default auto: CUDA, else MPS, else CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per training run (default: torch's; with --engine ray: 1, and each run asks "
                        "Ray for this many CPUs). The numbers depend on it: compare runs made with the same")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: the runs one after the other here (default); ray: each (arm, seed) run is a Ray task, "
                        "with a GPU when the cluster has them (the same numbers as a local run with the same --threads)")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster (auto, HOST:6379 or ray://HOST:10001); default: RAY_ADDRESS, "
                        "else a Ray started on this machine")
    p.add_argument("--report", "-o", default=None,
                   help="write the report folder here (results.json, PNG plots, report.html)")
    return "evaluate"


def run(args) -> int:
    from augstudio.core.workflows.evaluate import evaluate_job  # deferred: torch
    from augstudio.core.workflows.report import format_table  # deferred: torch

    job = evaluate_job(args.data, args.recipes, model=args.model, epochs=args.epochs, seeds=args.seeds,
                       val_fraction=args.val_fraction, image_size=args.image_size, batch_size=args.batch_size,
                       lr=args.lr, split_seed=args.split_seed, device=args.device, report=args.report,
                       threads=args.threads, engine=args.engine, address=args.address)
    try:
        result = run_with_tqdm(job, desc="evaluate")
    except KeyboardInterrupt:
        job.close()
        print("augstudio evaluate: interrupted; no report was written.", file=sys.stderr)
        return 1
    print(format_table(result))
    skipped = result.get("problems", [])
    if skipped:
        print(f"{len(skipped)} item(s) skipped; see the report's list" if args.report else
              f"{len(skipped)} item(s) skipped, e.g. {skipped[0]['path']}: {skipped[0]['reason']}")
    if args.report:
        print(f"report: {result['report']}/report.html")
    return 0
