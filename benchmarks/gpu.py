"""The GPU check in one command: the `cuda` tests (device contract + CPU-vs-GPU agreement), then the GPU
numbers the README quotes, printed as Markdown tables in one run (about 5 minutes on one modern GPU):

* the batched reference chain at batch 256 (224x224 output) vs kornia on the same GPU, images/s;
* PuzzleMix batch 64 at 32x32 and 32 at 224x224 vs the official procedure (GCO per image on the CPU, the
  transport on the GPU), ms per batch;
* saliency images/s (resnet18 at 224, random weights: the speed, not the maps);
* AdaIN frames/s at 512x512 (random weights);
* texture synthesis seconds per iteration at 512x512 (random multi-scale features).

``--dry-run`` runs everything on the CPU with tiny sizes (and the `cuda` tests with the CPU standing in for the
GPU), so the script is known to work before a GPU is lent: under 2 minutes here.

    python benchmarks/gpu.py              # on a CUDA machine
    python benchmarks/gpu.py --dry-run    # anywhere
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from augstudio.core.engine.recipe import Recipe  # noqa: E402

CHAIN = [{"op": "hflip"}, {"op": "rotate", "degrees": 15},
         {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3},
         {"op": "random_resized_crop", "size": [224, 224], "scale": [0.08, 1.0]},
         {"op": "gaussian_noise", "std": [0.0, 0.1]}, {"op": "cutout", "holes": 1, "side": [0.1, 0.3]}]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, repeats: int) -> float:
    """Median seconds of ``fn`` (one warm-up call first)."""
    fn()
    sync(dev)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def photos(n: int, size: int, dev) -> torch.Tensor:
    from skimage import data

    pics = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for i in range(n):
        p = torch.from_numpy(np.ascontiguousarray(pics[i % 4])).permute(2, 0, 1)[None].float()
        out.append(torch.nn.functional.interpolate(p, size=(size, size), mode="area")[0])
    return torch.stack(out).round().to(torch.uint8).to(dev)


def chain_bench(dev, batch: int, size: int, out: int, repeats: int) -> list[tuple]:
    steps = [dict(s) for s in CHAIN]
    steps[3]["size"] = [out, out]
    recipe = Recipe.from_dict({"seed": 0, "steps": steps})
    x = photos(batch, size, dev)
    keys = [f"item{i}" for i in range(batch)]
    rows = []
    t = timed(lambda: recipe.apply_batch(x, keys), dev, repeats)
    rows.append(("augstudio (apply_batch)", batch / t))
    try:
        import kornia.augmentation as K

        aug = K.AugmentationSequential(
            K.RandomHorizontalFlip(p=1.0), K.RandomRotation(15.0, p=1.0),
            K.ColorJitter(0.3, 0.3, 0.3, p=1.0), K.RandomResizedCrop((out, out), scale=(0.08, 1.0), p=1.0),
            K.RandomGaussianNoise(std=0.05, p=1.0), K.RandomErasing(scale=(0.01, 0.09), p=1.0)).to(dev)
        xf = x.float() / 255
        t = timed(lambda: aug(xf), dev, repeats)
        rows.append(("kornia 0.x (same chain, float)", batch / t))
    except ImportError:
        rows.append(("kornia (not installed: pip install -e '.[bench]')", float("nan")))
    return rows


def puzzlemix_bench(dev, configs, repeats: int) -> list[tuple]:
    from puzzlemix import _cnn, _images, reference_puzzlemix  # benchmarks/puzzlemix.py

    from augstudio.core.methods.puzzlemix import puzzlemix_pairs, saliency

    rows = []
    for n, size in configs:
        x = _images(n, size).to(dev)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).to(dev)
        model = _cnn().to(dev)
        y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(2)).to(dev)
        sal = saliency(model, x, y)
        ours, ref = [], []
        for bn in (2, 4, 8, 16):
            ours.append(timed(lambda: puzzlemix_pairs(x, x[perm], sal, sal[perm], 0.4, bn), dev, repeats))  # noqa: B023
            try:
                ref.append(timed(lambda: reference_puzzlemix(x, x[perm], sal, sal[perm], 0.4, bn), dev, repeats))  # noqa: B023
            except ImportError:  # gco-wrapper missing
                ref.append(float("nan"))
        rows.append((f"{n} x {size}x{size}", 1000 * statistics.mean(ours), 1000 * statistics.mean(ref)))
    return rows


def saliency_bench(dev, n: int, size: int, repeats: int) -> float:
    import torchvision

    from augstudio.core.methods.puzzlemix import saliency

    net = torchvision.models.resnet18(weights=None, num_classes=10).to(dev).eval()
    x = torch.rand(n, 3, size, size, device=dev)
    y = torch.zeros(n, dtype=torch.long, device=dev)
    return n / timed(lambda: saliency(net, x, y), dev, repeats)


def adain_bench(dev, size: int, repeats: int) -> float:
    from augstudio.core.methods.style.adain import AdaIN, make_decoder, make_encoder

    model = AdaIN(make_encoder(), make_decoder()).to(dev).eval()
    content = torch.rand(1, 3, size, size, device=dev)
    style = torch.rand(1, 3, size, size, device=dev)
    with torch.no_grad():
        t = timed(lambda: model.stylize(content, [style], 1.0), dev, repeats)
    return 1.0 / t


def texture_bench(dev, size: int, iterations: int) -> float:
    from augstudio.core.base.jobs import run_job
    from augstudio.core.methods.style.optimize import texture_job

    src = photos(1, size, "cpu")[0]
    t = time.perf_counter()
    run_job(texture_job(src, size=(size, size), iterations=iterations, device=dev, preview_every=10 ** 6))
    sync(dev)
    return (time.perf_counter() - t) / iterations


def run_cuda_tests(dry: bool) -> int:
    env = dict(os.environ, AUGSTUDIO_TEST_DEVICE="cpu" if dry else "cuda")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "core" / "test_cuda.py")]
    print(f"$ {'AUGSTUDIO_TEST_DEVICE=cpu ' if dry else ''}pytest -m cuda tests/core/test_cuda.py", flush=True)
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    print("\n".join(res.stdout.strip().splitlines()[-3:]), flush=True)
    return res.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the script works")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args(argv)
    dry = args.dry_run
    dev = torch.device(args.device or ("cpu" if dry else "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --dry-run, or on a machine with a GPU", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if dry else 5)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "CPU"
    print(f"# augstudio GPU check: {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
          f"{' (dry run: CPU, tiny sizes)' if dry else ''}\n", flush=True)
    failed = 0 if args.skip_tests else run_cuda_tests(dry)

    small = dry
    print("\n## Batched reference chain\n\n| implementation | images/s |\n|---|---:|")
    for label, ips in chain_bench(dev, 4 if small else 256, 64 if small else 512, 32 if small else 224, repeats):
        print(f"| {label} | {ips:.0f} |", flush=True)

    print("\n## PuzzleMix (mean over 2x2..16x16 blocks)\n\n| batch | augstudio ms | official procedure ms | speed-up |"
          "\n|---|---:|---:|---:|")
    configs = [(4, 32)] if small else [(64, 32), (32, 224)]
    for batch, ours, ref in puzzlemix_bench(dev, configs, repeats):
        print(f"| {batch} | {ours:.1f} | {ref:.1f} | {ref / ours:.1f}x |", flush=True)

    print("\n## Saliency, AdaIN, texture synthesis\n\n| measure | value |\n|---|---:|")
    print(f"| saliency, resnet18 at {64 if small else 224}^2, images/s | "
          f"{saliency_bench(dev, 4 if small else 64, 64 if small else 224, repeats):.0f} |", flush=True)
    s = 64 if small else 512
    print(f"| AdaIN at {s}^2, frames/s | {adain_bench(dev, s, repeats):.1f} |", flush=True)
    print(f"| texture synthesis at {s}^2, s/iteration | {texture_bench(dev, s, 2 if small else 20):.3f} |",
          flush=True)
    print(f"\ncuda tests: {'passed' if failed == 0 else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
