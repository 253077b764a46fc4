"""Reference-chain benchmark: augstudio vs torchvision v2, albumentations and kornia, in one run.

    python benchmarks/chain.py [--runs 200] [--json out.json] [--device cpu|cuda] [--batch 256]

Single-threaded CPU (torch and OpenCV set to 1 thread), on skimage.data.astronaut (512x512 RGB). The
reference chain: hflip p=1, rotate +-15 deg, color_jitter 0.3/0.3/0.3, random_resized_crop 224 (scale
0.08-1, ratio 3/4-4/3), gaussian noise std up to 0.1, cutout one hole of side 0.1-0.3. Every library gets
uint8 HWC/CHW input as it would from a decoder; conversions it needs are timed. Prints markdown tables
(ms/image = median of --runs after warm-up, p95, ratio to augstudio; the libraries are timed round-robin,
one call each per round, so load drift on a shared machine hits them alike) and writes them to --json.

Needs the bench extra: albumentations 2.0.8, kornia, opencv-python-headless, scikit-image.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augstudio.core.engine.recipe import Recipe  # noqa: E402
from augstudio.core.io.images import Picture  # noqa: E402

CHAIN = [
    {"op": "hflip", "p": 1.0},
    {"op": "rotate", "degrees": 15},
    {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3},
    {"op": "random_resized_crop", "size": 224, "scale": [0.08, 1.0], "ratio": [0.75, 4 / 3]},
    {"op": "gaussian_noise", "std": 0.1},
    {"op": "cutout", "holes": 1, "side": [0.1, 0.3]},
]


def timeit(fn, runs: int, warmup: int) -> dict:
    for k in range(warmup):
        fn(k)
    ts = []
    for k in range(runs):
        t0 = time.perf_counter()
        fn(warmup + k)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"median_ms": statistics.median(ts) * 1e3, "p95_ms": ts[int(0.95 * (len(ts) - 1))] * 1e3, "runs": runs}


def timeit_interleaved(fns: dict, runs: int, warmup: int) -> dict:
    """Time several callables round-robin (one call of each per round), so drifting machine load hits
    them alike and the ratios stay fair on a shared machine."""
    for k in range(warmup):
        for fn in fns.values():
            fn(k)
    ts: dict = {name: [] for name in fns}
    for k in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(warmup + k)
            ts[name].append(time.perf_counter() - t0)
    out = {}
    for name, v in ts.items():
        v.sort()
        out[name] = {"median_ms": statistics.median(v) * 1e3, "p95_ms": v[int(0.95 * (len(v) - 1))] * 1e3, "runs": runs}
    return out


# -- the chain in each library -------------------------------------------------------------------------------
def augstudio_chain(img, size=224):
    steps = [dict(s) for s in CHAIN]
    steps[3]["size"] = size
    pipe = Recipe.from_dict({"seed": 0, "steps": steps}).pipeline()
    pic = Picture(torch.from_numpy(img).permute(2, 0, 1).contiguous(), "rgb")
    return lambda k: pipe.run(pic, 0, k, 0)[0].pixels


def torchvision_chain(img):
    from torchvision.transforms import v2

    t = v2.Compose([
        v2.RandomHorizontalFlip(p=1.0), v2.RandomRotation(15), v2.ColorJitter(0.3, 0.3, 0.3),
        v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(0.75, 4 / 3), antialias=True),
        v2.ToDtype(torch.float32, scale=True), v2.GaussianNoise(sigma=0.1),
        v2.RandomErasing(p=1.0, scale=(0.01, 0.09), ratio=(1.0, 1.0), value=0),
    ])
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    return lambda k: t(x)


def albumentations_chain(img):
    import albumentations as A
    import cv2

    t = A.Compose([
        A.HorizontalFlip(p=1.0), A.Rotate(limit=15, border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0),
        A.RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, 4 / 3), p=1.0),
        A.GaussNoise(std_range=(0.0, 0.1), p=1.0),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.3), hole_width_range=(0.1, 0.3), p=1.0),
    ])
    return lambda k: t(image=img)["image"]


def kornia_pipeline(size=224):
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=1.0), K.RandomRotation(15.0, p=1.0), K.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0),
        K.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(0.75, 4 / 3), p=1.0),
        K.RandomGaussianNoise(std=0.1, p=1.0), K.RandomErasing(scale=(0.01, 0.09), ratio=(1.0, 1.0), p=1.0),
    )


def kornia_chain(img):
    aug = kornia_pipeline()
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()[None]
    return lambda k: aug(x.float().div_(255))


# -- each op alone vs its closest peer -----------------------------------------------------------------------
def op_pairs(img):
    import albumentations as A
    import cv2
    from torchvision.transforms import v2

    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    pic = Picture(x, "rgb")

    def ours(step):
        pipe = Recipe.from_dict({"steps": [step]}).pipeline()
        return lambda k: pipe.run(pic, 0, k, 0)[0].pixels

    def alb(t):
        c = A.Compose([t])
        return lambda k: c(image=img)["image"]

    def tv(t):
        return lambda k: t(x)

    return [
        ("hflip", ours({"op": "hflip"}), alb(A.HorizontalFlip(p=1.0)), tv(v2.RandomHorizontalFlip(p=1.0))),
        ("rotate", ours({"op": "rotate", "degrees": 15}), alb(A.Rotate(limit=15, border_mode=cv2.BORDER_CONSTANT, p=1.0)),
         tv(v2.RandomRotation(15, interpolation=v2.InterpolationMode.BILINEAR))),
        ("color_jitter", ours(CHAIN[2]), alb(A.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0)), tv(v2.ColorJitter(0.3, 0.3, 0.3))),
        ("random_resized_crop", ours(CHAIN[3]), alb(A.RandomResizedCrop(size=(224, 224), p=1.0)),
         tv(v2.RandomResizedCrop(224, antialias=True))),
        ("gaussian_noise", ours(CHAIN[4]), alb(A.GaussNoise(std_range=(0.0, 0.1), p=1.0)),
         tv(v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.GaussianNoise(sigma=0.1)]))),
        ("cutout", ours(CHAIN[5]), alb(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.3),
                                                       hole_width_range=(0.1, 0.3), p=1.0)),
         tv(v2.RandomErasing(p=1.0, scale=(0.01, 0.09), ratio=(1.0, 1.0), value=0))),
        ("equalize", ours({"op": "equalize"}), alb(A.Equalize(p=1.0)), tv(v2.RandomEqualize(p=1.0))),
        ("gaussian_blur", ours({"op": "gaussian_blur", "sigma": [1.0, 1.0], "kernel_size": 7}),
         alb(A.GaussianBlur(blur_limit=(7, 7), sigma_limit=(1.0, 1.0), p=1.0)), tv(v2.GaussianBlur(7, sigma=1.0))),
    ]


def batched(img, device, batch, runs):
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()[None].repeat(batch, 1, 1, 1).to(device)
    r = Recipe.from_dict({"seed": 0, "steps": CHAIN})
    aug = kornia_pipeline().to(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def ours(k):
        r.apply_batch(x, [f"{k}:{i}" for i in range(batch)])
        sync()

    def kor(k):
        aug(x.float().div_(255))
        sync()

    out = {}
    for name, fn in (("augstudio", ours), ("kornia", kor)):
        res = timeit(fn, runs, 1)
        res["images_per_s"] = batch / (res["median_ms"] / 1e3)
        out[name] = res
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--op-runs", type=int, default=100, help="runs per op in the per-op table")
    ap.add_argument("--device", default="cpu", help="device of the batched path (cpu, cuda)")
    ap.add_argument("--batch", type=int, default=None, help="batch size of the batched path (default 256 on cuda, 16 on cpu)")
    ap.add_argument("--batch-runs", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    results: dict = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                     "threads": 1, "runs": args.runs, "image": "skimage.data.astronaut 512x512"}

    fns = {name: make(img) for name, make in (
        ("augstudio", augstudio_chain), ("albumentations", albumentations_chain),
        ("torchvision v2", torchvision_chain), ("kornia", kornia_chain))}
    fns["augstudio preview (512x512 out)"] = augstudio_chain(img, 512)
    chain = timeit_interleaved(fns, args.runs, args.warmup)
    results["chain"] = chain
    base = chain["augstudio"]["median_ms"]
    print("## Reference chain, one image, 1 CPU thread\n")
    print("| library | ms/image (median) | p95 ms | augstudio speed-up |")
    print("|---|---:|---:|---:|")
    for name, r in chain.items():
        r["speedup_vs"] = r["median_ms"] / base
        print(f"| {name} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['speedup_vs']:.2f}x |")

    print("\n## Each op alone vs its closest peer (ms/image, median)\n")
    print("| op | augstudio | albumentations | torchvision v2 | vs albumentations | vs torchvision |")
    print("|---|---:|---:|---:|---:|---:|")
    ops = {}
    for name, ours, alb, tv in op_pairs(img):
        r = timeit_interleaved({"o": ours, "a": alb, "t": tv}, args.op_runs, 10)
        o, a, t = r["o"]["median_ms"], r["a"]["median_ms"], r["t"]["median_ms"]
        ops[name] = {"augstudio": o, "albumentations": a, "torchvision": t}
        print(f"| {name} | {o:.3f} | {a:.3f} | {t:.3f} | {a / o:.2f}x | {t / o:.2f}x |")
    results["ops"] = ops

    batch = args.batch or (256 if args.device.startswith("cuda") else 16)
    runs = args.batch_runs or (20 if args.device.startswith("cuda") else 3)
    b = batched(img, args.device, batch, runs)
    results["batched"] = {"device": args.device, "batch": batch, **b}
    print(f"\n## Batched path, batch {batch} on {args.device}\n")
    print("| library | ms/batch (median) | images/s |")
    print("|---|---:|---:|")
    for name, r in b.items():
        print(f"| {name} | {r['median_ms']:.1f} | {r['images_per_s']:.0f} |")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
