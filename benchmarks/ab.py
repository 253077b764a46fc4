"""In-process A/B of a kernel change: a git revision of ``augstudio`` beside the working tree, in one process.

    python benchmarks/ab.py --base HEAD --rows pad,gamma,chain --runs 300

On a shared VM, timings of two separate runs differ by more than most changes (the same op read 1.3-2.7x
slower between two runs a minute apart), so a change is only judged against its base inside one process.
The revision's ``augstudio`` package is extracted (``git archive``) into a temporary folder and renamed
``augstudio_base`` (its imports rewritten), so both load side by side. Rows are ``chain.py``'s op-table
names, or ``chain`` for the reference chain through ``Recipe.apply``.

Each round puts a peer call (albumentations or torchvision, in a random order) before each of ours, and
the base / new order is random: a call of ours never follows the other copy of our own code, whose warm
caches would flatter both against the peers (``benchmarks/README.md``, "the twin copy flatters"). Prints
median times, new / base, and each copy's ratio to the peers (above 1: faster than the peer). The peer
ratios are a guide only: here a peer always follows one of ours, where ``chain.py``'s table (the README's
figures) lets each library follow each other equally often; small ops read 0.1-0.15x higher here.

Run a small change both ways round (commit it, then compare the old tree against it): a change that moves
allocations can move which copy's output lands on freshly trimmed heap, which alone read 0.4-0.6x for gamma.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract(rev: str, into: Path) -> None:
    """``augstudio`` at ``rev`` as the package ``augstudio_base`` under ``into``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "augstudio"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    (into / "augstudio").rename(into / "augstudio_base")
    for path in (into / "augstudio_base").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\baugstudio\.", "augstudio_base.", text), encoding="utf-8")


def _applying(recipe, x):
    return lambda k: recipe.apply(x, item=k)


def _running(pipe, pic):
    return lambda k: pipe.run(pic, 0, k, 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree with")
    ap.add_argument("--rows", required=True, help="comma-separated op-table rows of chain.py, or chain")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = tempfile.TemporaryDirectory(prefix="augstudio-ab-")
    extract(args.base, Path(tmp.name))
    sys.path.insert(0, tmp.name)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import albumentations as A
    import chain as C
    from augstudio_base.core.engine.recipe import Recipe as RecipeBase
    from augstudio_base.core.io.images import Picture as PictureBase
    from augstudio_base.core.kernels import jit as jit_base
    from skimage import data

    from augstudio.core.engine.recipe import Recipe
    from augstudio.core.io.images import Picture
    from augstudio.core.kernels import jit

    jit.load_all_now()
    jit_base.load_all_now()
    img = np.ascontiguousarray(data.astronaut())
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    table = {name: (step, alb, tv) for name, step, alb, tv, _ in C.op_table(img)}
    for row in args.rows.split(","):
        if row == "chain":
            ours = {"base": RecipeBase.from_dict({"seed": 0, "steps": C.CHAIN}),
                    "new": Recipe.from_dict({"seed": 0, "steps": C.CHAIN})}
            ours = {n: _applying(r, x) for n, r in ours.items()}
            peers = {"albumentations": C.albumentations_chain(img), "torchvision": C.torchvision_chain(img)}
        else:
            step, alb, tv = table[row]
            pipes = {"base": (RecipeBase.from_dict({"steps": [step]}).pipeline(), PictureBase(x, "rgb")),
                     "new": (Recipe.from_dict({"steps": [step]}).pipeline(), Picture(x, "rgb"))}
            ours = {n: _running(*pp) for n, pp in pipes.items()}
            peers = {}
            if alb is not None:
                peers["albumentations"] = (lambda c: lambda k: c(image=img))(A.Compose([alb]))
            if tv is not None:
                peers["torchvision"] = (lambda t: lambda k: t(x))(tv)
        fns = {**ours, **peers}
        times: dict = {n: [] for n in fns}
        order = random.Random(0)
        warmup = 20
        for k in range(args.runs + warmup):
            mine, theirs = list(ours), list(peers)
            order.shuffle(mine)
            order.shuffle(theirs)
            for name in (theirs[0], mine[0], theirs[-1], mine[1]):
                t0 = time.perf_counter()
                fns[name](k)
                dt = time.perf_counter() - t0
                if k >= warmup:
                    times[name].append(dt)
        med = {n: statistics.median(v) * 1e3 for n, v in times.items()}
        ratios = "  ".join(f"{p}: base {med[p] / med['base']:.2f}x new {med[p] / med['new']:.2f}x" for p in peers)
        print(f"{row:28s} base {med['base']:.3f} ms  new {med['new']:.3f} ms  new/base {med['new'] / med['base']:.3f}  "
              f"{ratios}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
