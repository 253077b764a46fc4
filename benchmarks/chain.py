"""Reference-chain benchmark: augstudio vs torchvision v2, albumentations and kornia, in one run.

    python benchmarks/chain.py [--runs 200] [--json out.json] [--device cpu|cuda] [--batch 256]
    python benchmarks/chain.py --only ops --ops rotate,equalize     # a few rows of the per-op table
    python benchmarks/chain.py --only chain --block 25 --runs 400   # each library 25 calls in a row per round
    python benchmarks/chain.py --only chain --fresh-input           # each call on a freshly written input

Single-threaded CPU (torch and OpenCV set to 1 thread), on skimage.data.astronaut (512x512 RGB). The
reference chain: hflip p=1, rotate +-15 deg, color_jitter 0.3/0.3/0.3, random_resized_crop 224 (scale
0.08-1, ratio 3/4-4/3), gaussian noise std up to 0.1, cutout one hole of side 0.1-0.3, through the public
``Recipe.apply``. Every library gets uint8 HWC/CHW input as it would from a decoder; conversions it needs
are timed. Prints markdown tables (ms/image = median of --runs after warm-up, p95, ratio to augstudio; the
libraries are timed round-robin, one call each per round in a new random order each round, so load drift
on a shared machine hits them alike and each follows each other's call about as often; besides wall time the calling thread's CPU time is recorded, which other processes' load disturbs
less) with the machine's load average, and writes everything to --json.

The per-op table times every registered per-image op alone (``Pipeline.run``: sampling included, as
albumentations' ``Compose`` includes its own) against albumentations' and torchvision v2's closest
equivalents ("-" where a library has none).

Needs the bench extra: albumentations 2.0.8, kornia, opencv-python-headless, scikit-image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
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


def _summary(wall: list, cpu: list, runs: int, faults: int = 0) -> dict:
    wall, cpu = sorted(wall), sorted(cpu)
    return {"median_ms": statistics.median(wall) * 1e3, "p95_ms": wall[int(0.95 * (len(wall) - 1))] * 1e3,
            "cpu_median_ms": statistics.median(cpu) * 1e3, "runs": runs, "page_faults_per_call": faults / runs}


def _minor_faults() -> int:
    return resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)).ru_minflt


def timeit(fn, runs: int, warmup: int) -> dict:
    return timeit_interleaved({"fn": fn}, runs, warmup)["fn"]


_ORDER = {"shuffle": True}  # --fixed-order: the same order every round


def timeit_interleaved(fns: dict, runs: int, warmup: int, block: int = 1) -> dict:
    """Time several callables round-robin (``block`` calls of each per round), so drifting machine load
    hits them alike and the ratios stay fair on a shared machine. Wall time and the thread's CPU time.

    ``block=1`` (one call each in turn) starts every call in the caches and heap the other libraries left;
    a larger block times each library as a training loop runs it, many calls in a row (the first call of
    each block is not counted). Each round takes the libraries in a new random order (seeded), so each one
    follows each other about equally often: in a fixed order the first one always followed the last one's
    call (torchvision's or kornia's, which touch tens of MB) and the second always a small one."""
    for k in range(warmup):
        for fn in fns.values():
            if getattr(fn, "prepare", None) is not None:
                fn.prepare(k)
            fn(k)
    wall: dict = {name: [] for name in fns}
    cpu: dict = {name: [] for name in fns}
    faults = dict.fromkeys(fns, 0)  # minor page faults (fresh memory pages) in the timed calls
    k = warmup
    names = list(fns)
    order = random.Random(0)
    while len(wall[names[0]]) < runs:
        if _ORDER["shuffle"]:
            order.shuffle(names)
        for name in names:
            fn = fns[name]
            prepare = getattr(fn, "prepare", None)
            for i in range(block + (block > 1)):
                if prepare is not None:  # untimed: e.g. a freshly written input (--fresh-input)
                    prepare(k + i)
                f0 = _minor_faults()
                c0, t0 = time.thread_time(), time.perf_counter()
                fn(k + i)
                t1, c1 = time.perf_counter(), time.thread_time()
                if (i or block == 1) and len(wall[name]) < runs:
                    wall[name].append(t1 - t0)
                    cpu[name].append(c1 - c0)
                    faults[name] += _minor_faults() - f0
        k += block + 1
    return {name: _summary(wall[name], cpu[name], runs, faults[name]) for name in fns}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# -- the chain in each library -------------------------------------------------------------------------------
def with_input(make_input, call, fresh: bool):
    """``call(input, k)`` as a timed callable. ``fresh``: before each call (untimed, ``prepare``) the input is
    made anew, freshly written and in cache as a decoder hands it over; else one input serves every call,
    and strict turns leave it wherever the other libraries' calls pushed it."""
    if not fresh:
        x = make_input()
        return lambda k: call(x, k)
    held: dict = {}

    def fn(k):
        return call(held["x"], k)

    fn.prepare = lambda k: held.__setitem__("x", make_input())
    return fn


def _chw(img):
    return lambda: torch.from_numpy(img).permute(2, 0, 1).contiguous()


def augstudio_chain(img, size=224, fresh=False):
    steps = [dict(s) for s in CHAIN]
    steps[3]["size"] = size
    recipe = Recipe.from_dict({"seed": 0, "steps": steps})
    return with_input(_chw(img), lambda x, k: recipe.apply(x, item=k), fresh)


def torchvision_chain(img, fresh=False):
    from torchvision.transforms import v2

    t = v2.Compose([
        v2.RandomHorizontalFlip(p=1.0), v2.RandomRotation(15), v2.ColorJitter(0.3, 0.3, 0.3),
        v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(0.75, 4 / 3), antialias=True),
        v2.ToDtype(torch.float32, scale=True), v2.GaussianNoise(sigma=0.1),
        v2.RandomErasing(p=1.0, scale=(0.01, 0.09), ratio=(1.0, 1.0), value=0),
    ])
    return with_input(_chw(img), lambda x, k: t(x), fresh)


def albumentations_chain(img, fresh=False):
    import albumentations as A
    import cv2

    t = A.Compose([
        A.HorizontalFlip(p=1.0), A.Rotate(limit=15, border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0),
        A.RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, 4 / 3), p=1.0),
        A.GaussNoise(std_range=(0.0, 0.1), p=1.0),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.3), hole_width_range=(0.1, 0.3), p=1.0),
    ])
    return with_input(img.copy, lambda x, k: t(image=x)["image"], fresh)


def kornia_pipeline(size=224):
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=1.0), K.RandomRotation(15.0, p=1.0), K.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0),
        K.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(0.75, 4 / 3), p=1.0),
        K.RandomGaussianNoise(std=0.1, p=1.0), K.RandomErasing(scale=(0.01, 0.09), ratio=(1.0, 1.0), p=1.0),
    )


def kornia_chain(img, fresh=False):
    aug = kornia_pipeline()
    return with_input(_chw(img), lambda x, k: aug(x[None].float().div_(255)), fresh)


# where albumentations computes something else than ours (torchvision's semantics), the note says what
GREY = "albumentations: cvtColor's 0.299 grey, rounded (ours: torchvision's float grey, floored)"
NO_AA = "albumentations: no antialiasing (ours: block means first when shrinking 2x or more)"
SUBPIXEL = ("albumentations and torchvision: shifts rounded to whole pixels, a copy (ours: sub-pixel, bilinear; "
            "`whole_pixels: true` is theirs)")
AREA = ("albumentations: area_for_downscale, its antialiased form (INTER_AREA whenever it shrinks; ours: block "
        "means first when shrinking 2x or more, then bilinear)")


# -- each op alone vs its closest peers ----------------------------------------------------------------------
def op_table(img) -> list[tuple]:
    """(op name, our step, albumentations transform or None, torchvision v2 callable or None, note)."""
    import albumentations as A
    import cv2
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    rng = np.random.default_rng(0)
    const = cv2.BORDER_CONSTANT
    flips = [{"op": "hflip"}, {"op": "vflip"}]
    a_flips = [A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)]
    t_flips = [v2.RandomHorizontalFlip(1.0), v2.RandomVerticalFlip(1.0)]
    mix3 = [{"op": "hflip"}, {"op": "brightness", "factor": 0.2}, {"op": "rotate", "degrees": 15}]
    a_mix3 = [A.HorizontalFlip(p=1.0), A.ColorJitter(0.2, 0, 0, 0, p=1.0), A.Rotate(15, border_mode=const, p=1.0)]
    t_mix3 = [v2.RandomHorizontalFlip(1.0), v2.ColorJitter(brightness=0.2), v2.RandomRotation(15)]
    return [
        ("affine", {"op": "affine"},
         A.Affine(rotate=(-15, 15), translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), shear=(-5, 5), p=1.0),
         v2.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5), ""),
        ("center_crop", {"op": "center_crop", "size": 224}, A.CenterCrop(224, 224, p=1.0), v2.CenterCrop(224), ""),
        ("hflip", {"op": "hflip"}, A.HorizontalFlip(p=1.0), v2.RandomHorizontalFlip(1.0), ""),
        ("pad", {"op": "pad", "padding": 4}, A.Pad(4, p=1.0), v2.Pad(4), ""),
        ("random_crop", {"op": "random_crop", "size": 224}, A.RandomCrop(224, 224, p=1.0), v2.RandomCrop(224), ""),
        ("random_resized_crop", CHAIN[3], A.RandomResizedCrop(size=(224, 224), p=1.0),
         v2.RandomResizedCrop(224, antialias=True), NO_AA),
        ("resize", {"op": "resize", "size": 224}, A.Resize(224, 224, p=1.0), v2.Resize((224, 224), antialias=True), NO_AA),
        # albumentations' own antialiased form of the same two ops: INTER_AREA whenever it shrinks
        ("random_resized_crop (antialiased)", CHAIN[3],
         A.RandomResizedCrop(size=(224, 224), area_for_downscale="image", p=1.0),
         v2.RandomResizedCrop(224, antialias=True), AREA),
        ("resize (antialiased)", {"op": "resize", "size": 224}, A.Resize(224, 224, area_for_downscale="image", p=1.0),
         v2.Resize((224, 224), antialias=True), AREA),
        ("rot90", {"op": "rot90"}, A.RandomRotate90(p=1.0),
         lambda x: F.rotate(x, 90.0 * int(rng.integers(4)), expand=True), "torchvision: rotate(90 k, expand)"),
        ("rotate", {"op": "rotate", "degrees": 15}, A.Rotate(limit=15, border_mode=const, p=1.0),
         v2.RandomRotation(15), ""),
        ("scale", {"op": "scale", "factor": [0.9, 1.1]}, A.Affine(scale=(0.9, 1.1), p=1.0),
         v2.RandomAffine(0, scale=(0.9, 1.1)), ""),
        ("shear", {"op": "shear"}, A.Affine(shear={"x": (-10, 10), "y": (0, 0)}, p=1.0),
         v2.RandomAffine(0, shear=(-10, 10)), ""),
        ("translate", {"op": "translate"}, A.Affine(translate_percent=(-0.1, 0.1), p=1.0),
         v2.RandomAffine(0, translate=(0.1, 0.1)), SUBPIXEL),
        ("translate (whole pixels)", {"op": "translate", "whole_pixels": True},
         A.Affine(translate_percent=(-0.1, 0.1), p=1.0), v2.RandomAffine(0, translate=(0.1, 0.1)), ""),
        ("vflip", {"op": "vflip"}, A.VerticalFlip(p=1.0), v2.RandomVerticalFlip(1.0), ""),
        ("autocontrast", {"op": "autocontrast"}, A.AutoContrast(method="pil", p=1.0), v2.RandomAutocontrast(1.0), ""),
        ("brightness", {"op": "brightness", "factor": 0.2}, A.ColorJitter(0.2, 0, 0, 0, p=1.0),
         v2.ColorJitter(brightness=0.2), "albumentations: ColorJitter (the same x -> f x)"),
        ("color_jitter", CHAIN[2], A.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0), v2.ColorJitter(0.3, 0.3, 0.3), GREY),
        ("contrast", {"op": "contrast", "factor": 0.2}, A.ColorJitter(0, 0.2, 0, 0, p=1.0),
         v2.ColorJitter(contrast=0.2), f"albumentations: ColorJitter; {GREY}"),
        ("equalize", {"op": "equalize"}, A.Equalize(p=1.0), v2.RandomEqualize(1.0), ""),
        ("gamma", {"op": "gamma"}, A.RandomGamma(gamma_limit=(80, 125), p=1.0),
         lambda x: F.adjust_gamma(x, float(rng.uniform(0.8, 1.25))), ""),
        ("gaussian_blur", {"op": "gaussian_blur", "sigma": [1.0, 1.0], "kernel_size": 7},
         A.GaussianBlur(blur_limit=(7, 7), sigma_limit=(1.0, 1.0), p=1.0), v2.GaussianBlur(7, sigma=1.0), "sigma 1, 7x7"),
        ("gaussian_blur (sigma 0.1-2)", {"op": "gaussian_blur"},
         A.GaussianBlur(blur_limit=0, sigma_limit=(0.1, 2.0), p=1.0), v2.GaussianBlur(13, sigma=(0.1, 2.0)),
         "albumentations: kernel of 2 int(3.5 sigma) + 1 taps, PIL's (ours: 2 ceil(3 sigma) + 1, another kernel: 8.3 "
         "vs 7.3 taps on average over sigma 0.1-2, never fewer); torchvision 13x13"),
        ("grayscale", {"op": "grayscale"}, A.ToGray(num_output_channels=3, p=1.0), v2.Grayscale(3), GREY),
        ("hue", {"op": "hue"}, A.ColorJitter(0, 0, 0, 0.1, p=1.0), v2.ColorJitter(hue=0.1),
         "albumentations: ColorJitter, 8-bit HSV (ours: float HSV, as torchvision)"),
        ("invert", {"op": "invert"}, A.InvertImg(p=1.0), v2.RandomInvert(1.0), ""),
        ("posterize", {"op": "posterize", "bits": [4, 4]}, A.Posterize(num_bits=4, p=1.0), v2.RandomPosterize(4, p=1.0), ""),
        ("saturation", {"op": "saturation", "factor": 0.2}, A.ColorJitter(0, 0, 0.2, 0, p=1.0),
         v2.ColorJitter(saturation=0.2), f"albumentations: ColorJitter; {GREY}"),
        ("sharpness", {"op": "sharpness"}, A.Sharpen(p=1.0), v2.RandomAdjustSharpness(1.5, p=1.0),
         "albumentations: Sharpen (another filter)"),
        ("solarize", {"op": "solarize"}, A.Solarize(threshold_range=(0.5, 0.5), p=1.0), v2.RandomSolarize(128, p=1.0), ""),
        ("gaussian_noise", CHAIN[4], A.GaussNoise(std_range=(0.0, 0.1), p=1.0),
         v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.GaussianNoise(sigma=0.1)]), ""),
        ("poisson_noise", {"op": "poisson_noise"}, A.ShotNoise(scale_range=(1 / 300, 1 / 30), p=1.0), None, ""),
        ("salt_pepper", {"op": "salt_pepper"}, A.SaltAndPepper(amount=(0.0, 0.05), p=1.0), None, ""),
        ("speckle_noise", {"op": "speckle_noise"},
         A.MultiplicativeNoise(multiplier=(0.9, 1.1), per_channel=True, elementwise=True, p=1.0), None,
         "albumentations: MultiplicativeNoise (uniform factors)"),
        ("cutout", CHAIN[5], A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.3),
                                             hole_width_range=(0.1, 0.3), p=1.0),
         v2.RandomErasing(p=1.0, scale=(0.01, 0.09), ratio=(1.0, 1.0), value=0), ""),
        ("grid_mask", {"op": "grid_mask"}, A.GridDropout(ratio=0.5, unit_size_range=(77, 205), p=1.0), None, ""),
        ("hide_and_seek", {"op": "hide_and_seek"}, A.GridDropout(ratio=0.5, holes_number_xy=(4, 4), p=1.0), None,
         "albumentations: GridDropout 4x4"),
        ("random_erasing", {"op": "random_erasing"}, A.Erasing(p=1.0), v2.RandomErasing(p=1.0), ""),
        ("one_of", {"op": "one_of", "steps": flips}, A.OneOf(a_flips, p=1.0), v2.RandomChoice(t_flips), "of hflip, vflip"),
        ("random_order", {"op": "random_order", "steps": mix3}, A.RandomOrder(a_mix3, n=3, p=1.0),
         v2.RandomOrder(t_mix3), "hflip, brightness, rotate"),
        ("some_of", {"op": "some_of", "steps": mix3, "n": [1, 2]}, A.SomeOf(a_mix3, n=2, p=1.0), None,
         "1-2 of hflip, brightness, rotate (albumentations: 2)"),
        ("stylize", {"op": "stylize", "method": "randconv"}, None, None, "RandConv"),
        ("augmix", {"op": "augmix"}, None, v2.AugMix(), ""),
        ("auto_augment", {"op": "auto_augment"}, None, v2.AutoAugment(), ""),
        ("rand_augment", {"op": "rand_augment"}, None, v2.RandAugment(), ""),
        ("trivial_augment", {"op": "trivial_augment"}, None, v2.TrivialAugmentWide(), ""),
    ]


def run_op_table(img, runs: int, only: set | None = None, block: int = 1) -> dict:
    import albumentations as A

    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    pic = Picture(x, "rgb")
    print("\n## Each op alone vs its closest peers (512x512 astronaut, 1 thread; ms/image, median of "
          f"{runs} interleaved runs; wall and thread CPU time)\n")
    print("| op | augstudio | albumentations | torchvision v2 | vs albumentations (wall / cpu) | vs torchvision | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    rows = {}
    for name, step, alb, tv, note in op_table(img):
        if only and name not in only and name.split(" ")[0] not in only:
            continue
        pipe = Recipe.from_dict({"steps": [step]}).pipeline()
        fns = {"augstudio": lambda k, pipe=pipe: pipe.run(pic, 0, k, 0)[0].pixels}
        if alb is not None:
            fns["albumentations"] = lambda k, c=A.Compose([alb]): c(image=img)["image"]
        if tv is not None:
            fns["torchvision"] = lambda k, t=tv: t(x)
        before = load()
        r = timeit_interleaved(fns, runs, max(3, runs // 10), block)
        rows[name] = {**r, "load": [before, load()], "note": note}
        o = r["augstudio"]

        def cell(lib, r=r):
            return f"{r[lib]['median_ms']:.3f}" if lib in r else "-"

        def ratio(lib, r=r, o=o):
            if lib not in r:
                return "-"
            return (f"{r[lib]['median_ms'] / o['median_ms']:.2f}x / "
                    f"{r[lib]['cpu_median_ms'] / max(o['cpu_median_ms'], 1e-6):.2f}x")

        print(f"| {name} | {o['median_ms']:.3f} | {cell('albumentations')} | {cell('torchvision')} | "
              f"{ratio('albumentations')} | {ratio('torchvision')} | {note} |", flush=True)
    if not only:  # the fixed cost of one call in each library: hflip of an 8x8 image
        tiny = np.ascontiguousarray(img[:8, :8])
        tx = torch.from_numpy(tiny).permute(2, 0, 1).contiguous()
        tpic = Picture(tx, "rgb")
        pipe = Recipe.from_dict({"steps": [{"op": "hflip"}]}).pipeline()
        c = A.Compose([A.HorizontalFlip(p=1.0)])
        from torchvision.transforms import v2

        t = v2.RandomHorizontalFlip(1.0)
        r = timeit_interleaved({"augstudio": lambda k: pipe.run(tpic, 0, k, 0)[0].pixels,
                                "albumentations": lambda k: c(image=tiny)["image"], "torchvision": lambda k: t(tx)},
                               runs, max(3, runs // 10))
        rows["(per-call cost: hflip of 8x8)"] = r
        print(f"| (per-call cost: hflip of 8x8) | {r['augstudio']['median_ms']:.3f} | "
              f"{r['albumentations']['median_ms']:.3f} | {r['torchvision']['median_ms']:.3f} | | | fixed cost of one call |")
    return rows


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

    out = timeit_interleaved({"augstudio": ours, "kornia": kor}, runs, 1)
    for res in out.values():
        res["images_per_s"] = batch / (res["median_ms"] / 1e3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--op-runs", type=int, default=100, help="runs per op in the per-op table")
    ap.add_argument("--ops", default="", help="comma-separated op names: only these rows of the per-op table")
    ap.add_argument("--only", default="chain,ops,batched", help="sections to run: chain, ops, batched")
    ap.add_argument("--block", type=int, default=1,
                    help="calls of each library in a row per round (1: strict round-robin)")
    ap.add_argument("--fixed-order", action="store_true",
                    help="the libraries in the same order every round instead of a random order per round "
                         "(before 2026-12-02: the first one always followed the last one's call)")
    ap.add_argument("--fresh-input", action="store_true",
                    help="the chain: hand every call a freshly written copy of the input (untimed), as a decoder "
                         "would, instead of one input the other libraries' calls push out of the caches")
    ap.add_argument("--device", default="cpu", help="device of the batched path (cpu, cuda)")
    ap.add_argument("--batch", type=int, default=None, help="batch size of the batched path (default 256 on cuda, 16 on cpu)")
    ap.add_argument("--batch-runs", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    sections = set(args.only.split(","))
    _ORDER["shuffle"] = not args.fixed_order

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    results: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                     "torch": torch.__version__, "opencv": cv2.__version__, "threads": 1, "runs": args.runs,
                     "image": "skimage.data.astronaut 512x512", "load_start": load()}

    if "chain" in sections:
        fresh = args.fresh_input
        fns = {name: make(img, fresh=fresh) for name, make in (
            ("augstudio", augstudio_chain), ("albumentations", albumentations_chain),
            ("torchvision v2", torchvision_chain), ("kornia", kornia_chain))}
        fns["augstudio preview (512x512 out)"] = augstudio_chain(img, 512, fresh=fresh)
        before = load()
        chain = timeit_interleaved(fns, args.runs, args.warmup, args.block)
        results["chain"] = chain
        results["chain_block"] = args.block
        results["chain_fresh_input"] = fresh
        results["chain_load"] = [before, load()]
        base, base_cpu = chain["augstudio"]["median_ms"], chain["augstudio"]["cpu_median_ms"]
        order = "one call of each in turn" if args.block == 1 else f"{args.block} calls of each in a row per round"
        order += ", each call on a freshly written input" if fresh else ""
        print(f"## Reference chain through Recipe.apply, one image, 1 CPU thread, {order} (load average {before} "
              f"-> {load()} on {os.cpu_count()} cores)\n")
        print("| library | ms/image (median) | p95 ms | CPU ms (median) | page faults / call | augstudio speed-up (wall / cpu) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in chain.items():
            r["speedup_vs"] = r["median_ms"] / base
            r["cpu_speedup_vs"] = r["cpu_median_ms"] / base_cpu
            print(f"| {name} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['cpu_median_ms']:.2f} | "
                  f"{r['page_faults_per_call']:.1f} | {r['speedup_vs']:.2f}x / {r['cpu_speedup_vs']:.2f}x |")

    if "ops" in sections:
        only = {o.strip() for o in args.ops.split(",") if o.strip()} or None
        results["ops"] = run_op_table(img, args.op_runs, only, args.block)
        results["ops_block"] = args.block

    if "batched" in sections:
        batch = args.batch or (256 if args.device.startswith("cuda") else 16)
        runs = args.batch_runs or (20 if args.device.startswith("cuda") else 5)
        before = load()
        b = batched(img, args.device, batch, runs)
        results["batched"] = {"device": args.device, "batch": batch, "load": [before, load()], **b}
        print(f"\n## Batched path (Recipe.apply_batch), batch {batch} on {args.device} (load {before} -> {load()})\n")
        print("| library | ms/batch (median) | images/s |")
        print("|---|---:|---:|")
        for name, r in b.items():
            print(f"| {name} | {r['median_ms']:.1f} | {r['images_per_s']:.0f} |")

    results["load_end"] = load()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
