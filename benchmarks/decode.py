"""Decode benchmark: one image file to the pixels an augmentation library starts from, side by side.

    python benchmarks/decode.py [--n 60] [--runs 300] [--size 640x480] [--json out.json]

Single-threaded (torch and OpenCV set to 1 thread). Writes ``--n`` JPEGs and PNGs of skimage's astronaut
(rotated, so no two files are alike) to a temporary folder and times, round-robin over the files (one call
of each form per round, so load drift hits them alike; thread CPU time, median):

* augstudio: ``read_image`` (EXIF-oriented Pillow decode, then the planar ``C x H x W`` Picture);
* Pillow + numpy, what an albumentations user writes (``np.asarray(Image.open(p).convert("RGB"))``, HWC);
* Pillow + torch's permuted copy to planes (what ``read_image`` did before ``core/io/layout.py``);
* torchvision ``decode_image`` (its own libjpeg / libpng, ``C x H x W``);
* OpenCV ``imread`` + ``cvtColor`` to RGB (HWC);

and the way back for export: augstudio's ``picture_to_pil`` against torch's permuted copy + ``fromarray``.
Prints markdown tables with the ratio of each to augstudio (above 1: augstudio is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augstudio.core.io.images import picture_to_pil, read_image  # noqa: E402
from benchmarks.chain import load, timeit_interleaved  # noqa: E402


def make_files(folder: Path, n: int, size: tuple[int, int]) -> dict:
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize(size)
    files: dict = {"jpg": [], "png": []}
    for i in range(n):
        im = base.rotate(360.0 * i / n)
        for ext in files:
            p = folder / f"{i}.{ext}"
            im.save(p, quality=90) if ext == "jpg" else im.save(p)
            files[ext].append(str(p))
    return files


def decoders() -> dict:
    import cv2
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image, read_file

    def pil_numpy(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))

    def pil_torch_permute(p):
        with Image.open(p) as im:
            a = np.array(im.convert("RGB"), dtype=np.uint8, copy=True)
        return torch.from_numpy(a).permute(2, 0, 1).contiguous()

    return {
        "augstudio read_image": lambda p: read_image(p).pixels,
        "Pillow + numpy (HWC)": pil_numpy,
        "Pillow + torch permuted copy": pil_torch_permute,
        "torchvision decode_image": lambda p: decode_image(read_file(p), mode=ImageReadMode.RGB),
        "OpenCV imread + cvtColor (HWC)": lambda p: cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
    }


def run(files: dict, runs: int) -> dict:
    results: dict = {}
    for ext, paths in files.items():
        fns = {name: (lambda k, f=f, paths=paths: f(paths[k % len(paths)])) for name, f in decoders().items()}
        before = load()
        results[f"decode {ext}"] = {**timeit_interleaved(fns, runs, max(3, runs // 10)), "load": [before, load()]}
    from PIL import Image

    pics = [read_image(p) for p in files["png"]]

    def torch_to_pil(pic):
        return Image.fromarray(pic.pixels.permute(1, 2, 0).contiguous().numpy())

    fns = {"augstudio picture_to_pil": lambda k: picture_to_pil(pics[k % len(pics)]),
           "torch permuted copy + fromarray": lambda k: torch_to_pil(pics[k % len(pics)])}
    before = load()
    results["picture to PIL"] = {**timeit_interleaved(fns, runs, max(3, runs // 10)), "load": [before, load()]}
    return results


def table(results: dict) -> str:
    lines = []
    for title, r in results.items():
        ours = next(v for k, v in r.items() if k.startswith("augstudio"))
        lines += [f"\n**{title}** (load {r['load'][0]}-{r['load'][1]})\n", "| form | ms / image | vs augstudio |",
                  "|---|---:|---:|"]
        for name, v in r.items():
            if name == "load":
                continue
            lines.append(f"| {name} | {v['cpu_median_ms']:.2f} | {v['cpu_median_ms'] / ours['cpu_median_ms']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="files per format")
    ap.add_argument("--runs", type=int, default=300, help="rounds (one call of each form per round)")
    ap.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the files")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as d:
        files = make_files(Path(d), args.n, (w, h))
        results = run(files, args.runs)
    print(f"# Decode to pixels, {w}x{h} RGB, one thread (thread CPU ms, median of {args.runs} rounds); "
          f"{os.cpu_count()} cores")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
