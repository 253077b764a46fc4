"""augstudio probe --data DIR [--size N] [--epochs E] [--seed S] [--device D] [--retrain]"""

from __future__ import annotations

from augstudio.core.base.jobs import run_with_tqdm

ORDER = 40


def add_parser(sub) -> str:
    p = sub.add_parser("probe", help="train (or reuse) the small probe classifier on a dataset",
                       description="Train a small CNN on the labelled dataset DIR (class sub-folders), report its "
                                   "validation accuracy, and save it in the settings folder "
                                   "($AUGSTUDIO_SETTINGS_DIR or the platform config folder) for saliency and "
                                   "PuzzleMix. A saved probe for the same files and settings is reused.")
    p.add_argument("--data", "-d", required=True, help="dataset folder with one sub-folder per class")
    p.add_argument("--size", type=int, default=32, help="side the images are resized to (default 32)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: about 7200 samples' worth, 10 to 150 epochs)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init and augmentation (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps or auto (default auto: CUDA, else MPS, else CPU)")
    p.add_argument("--retrain", action="store_true", help="train again even when a saved probe matches")
    return "probe"


def run(args) -> int:
    from augstudio.core.workflows.probe import train_probe_job  # deferred: torch

    res = run_with_tqdm(train_probe_job(args.data, size=args.size, epochs=args.epochs, seed=args.seed,
                                        device=args.device, reuse=not args.retrain), desc="probe")
    for path, reason in res.skipped:
        print(f"skipped {path}: {reason}")
    print(res.line())
    return 0
