"""augstudio export SRC --recipe R --out DST [--copies N] [--seed S] [--workers W]
[--format png|jpg|same|webdataset [--shard-size N] [--shard-image png|jpg|same]] [--engine local|ray [--address A]]"""

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
    p.add_argument("--workers", "-j", type=int, default=None,
                   help="worker processes (default 1; results do not depend on it); with --engine ray and no "
                        "--address: the CPUs of the Ray started here (default all)")
    p.add_argument("--format", choices=("png", "jpg", "same", "webdataset"), default="png",
                   help="output format; 'same' keeps the source's (palette images are always PNG); 'webdataset': "
                        "tar shards (DST/shard-000000.tar ...) for streaming training")
    p.add_argument("--shard-size", type=int, default=1000,
                   help="--format webdataset: samples per shard, rounded down to whole source images (default 1000)")
    p.add_argument("--shard-image", choices=("png", "jpg", "same"), default="png",
                   help="--format webdataset: the image format inside the shards (default png)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine (default); ray: Ray tasks on a cluster (same bytes; SRC and DST must "
                        "be paths every node can reach)")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster (auto, HOST:6379 or ray://HOST:10001); default: RAY_ADDRESS, "
                        "else a Ray started on this machine")
    p.add_argument("--gpus-per-task", type=float, default=None,
                   help="--engine ray with --device cuda: GPUs each task asks for (default 1; 0.25 packs four "
                        "tasks on a GPU)")
    p.add_argument("--targets", action="store_true",
                   help="export the source's masks, boxes and keypoints too, moved with the pixels and written "
                        "in the source's format (COCO JSON, YOLO txt, Pascal VOC XML or images/ + masks/); "
                        "dropped boxes and lost keypoints are listed in manifest.jsonl")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="warn about unknown top-level recipe keys instead of refusing them (a typo such as "
                        "'step:' would otherwise export without augmentation)")
    p.add_argument("--device", default="cpu",
                   help="where the recipe's steps run: cpu (default), cuda, mps or auto (CUDA, else MPS, else CPU)")
    return "export"


def run(args) -> int:
    from augstudio.core.workflows.export import export_job  # deferred: torch

    workers = args.workers if args.engine == "ray" else (args.workers or 1)
    job = export_job(args.src, args.recipe, args.out, copies=args.copies, seed=args.seed, workers=workers,
                     fmt=args.format, device=args.device, engine=args.engine, address=args.address,
                     shard_size=args.shard_size, shard_format=args.shard_image, gpus_per_task=args.gpus_per_task,
                     strict=args.strict, targets=args.targets)
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
