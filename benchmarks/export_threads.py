"""Export speed on a busy machine: ``augstudio export`` of 2,000 small images with ``-j 1`` and ``-j 2``
while 2 other processes keep the cores busy, against the same export with ``OMP_NUM_THREADS=1`` set by hand
(what users had to do when torch's default thread pool fought the load). Target: within 1.3x of it.

    .venv/bin/python benchmarks/export_threads.py [--images 1000] [--copies 2] [--repeat 3] [--busy 2]

Outputs must be byte-identical across all runs (checked). Plain recipe and a mixup batch stage.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PLAIN = """augstudio_recipe: 1
seed: 0
steps:
  - {op: hflip, p: 0.5}
  - {op: rotate, degrees: [-15, 15]}
  - {op: color_jitter, brightness: 0.3, contrast: 0.3}
  - {op: random_resized_crop, size: [32, 32], scale: [0.5, 1.0]}
  - {op: cutout, holes: 1}
"""
MIXUP = PLAIN + "batch:\n  - {op: mixup, alpha: 0.4}\n"


def make_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"{i:05d}.png")


def busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_export(src: Path, recipe: Path, out: Path, workers: int, copies: int, omp1: bool) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if omp1:
        env["OMP_NUM_THREADS"] = "1"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "augstudio", "export", str(src), "--recipe", str(recipe), "--out",
                    str(out), "--copies", str(copies), "--workers", str(workers)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="source images (outputs = images x copies)")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="busy background processes")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="augstudio-threads-"))
    stop = mp.Event()
    load = [mp.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.busy)]
    try:
        make_images(tmp / "src", args.images)
        for name, text in (("plain", PLAIN), ("mixup", MIXUP)):
            (tmp / f"{name}.yaml").write_text(text)
        for p in load:
            p.start()
        print(f"{args.images * args.copies} outputs of 32x32 from {args.images} 40x40 PNGs; {args.busy} busy "
              f"processes; {os.cpu_count()} cores; median of {args.repeat}")
        print("| recipe | -j | default threads (s) | OMP_NUM_THREADS=1 (s) | ratio | outputs equal |")
        print("|---|---:|---:|---:|---:|---|")
        for name in ("plain", "mixup"):
            for workers in (1, 2):
                times = {False: [], True: []}
                hashes = set()
                for _ in range(args.repeat):
                    for omp1 in (False, True):  # interleaved, so drifting load hits both alike
                        out = tmp / "out"
                        times[omp1].append(run_export(tmp / "src", tmp / f"{name}.yaml", out, workers,
                                                      args.copies, omp1))
                        hashes.add(tree_hash(out))
                a, b = statistics.median(times[False]), statistics.median(times[True])
                print(f"| {name} | {workers} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {'yes' if len(hashes) == 1 else 'NO'} |",
                      flush=True)
        print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    finally:
        stop.set()
        for p in load:
            p.join(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
