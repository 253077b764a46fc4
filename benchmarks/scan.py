"""Scan speed: augstudio.core.dataset.scan over 100,000 files (100 classes x 1,000), against torchvision's
ImageFolder indexing on the same folder. Target: < 3 s here.

    .venv/bin/python benchmarks/scan.py [--files 100000] [--classes 100] [--repeat 3]

Files are 1-byte stand-ins (the scan never decodes); the folder is made in a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def make_tree(root: Path, files: int, classes: int) -> None:
    per = files // classes
    for c in range(classes):
        d = root / f"class_{c:03d}"
        d.mkdir(parents=True)
        for i in range(per):
            ext = (".png", ".jpg", ".JPEG")[i % 3]
            with open(d / f"img_{i:05d}{ext}", "wb") as f:
                f.write(b"x")
        (d / "notes.txt").write_bytes(b"x")  # not an image: skipped
        (d / ".DS_Store").write_bytes(b"x")  # hidden: skipped


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the numbers here (benchmarks/figures.py reads it)")
    args = ap.parse_args()

    from augstudio.core.io.dataset import scan

    tmp = Path(tempfile.mkdtemp(prefix="augstudio-scan-"))
    try:
        t0 = time.perf_counter()
        make_tree(tmp / "data", args.files, args.classes)
        made = time.perf_counter() - t0
        root = tmp / "data"
        rows = []
        best, med, ds = best_of(lambda: scan(root, check_files=True), args.repeat)
        rows.append(("augstudio scan (stat every file)", best, med, len(ds)))
        best, med, ds2 = best_of(lambda: scan(root, check_files=False), args.repeat)
        rows.append(("augstudio scan (names only)", best, med, len(ds2)))
        try:
            from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

            def tv():
                _classes, idx = find_classes(str(root))
                return make_dataset(str(root), idx, extensions=IMG_EXTENSIONS)

            best, med, samples = best_of(tv, args.repeat)
            rows.append(("torchvision make_dataset", best, med, len(samples)))
        except ImportError:  # pragma: no cover
            pass
        print(f"{args.files:,} files in {args.classes} class folders (made in {made:.1f} s), "
              f"cpu count {os.cpu_count()}")
        print(f"{'what':36s} {'best s':>8s} {'median s':>9s} {'items':>8s}")
        for name, b, m, n in rows:
            print(f"{name:36s} {b:8.3f} {m:9.3f} {n:8,d}")
        ok = rows[0][1] < 3.0
        print(f"target < 3 s for the full scan: {'met' if ok else 'NOT met'}")
        if args.json:
            import json

            Path(args.json).write_text(json.dumps({"files": args.files, "classes": args.classes, "repeat": args.repeat,
                                                   "rows": [{"what": w, "best_s": b, "median_s": m, "items": n}
                                                            for w, b, m, n in rows]}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
