"""augstudio saliency --data DIR --image PATH... [--model SPEC] [--method M] --out DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from augstudio.core.base.errors import DatasetError, ImageError, ModelError
from augstudio.core.base.jobs import run_with_tqdm
from augstudio.core.io.images import Picture, atomic_write_bytes, encode, read_image
from augstudio.core.methods.saliency_options import (
    COLORMAPS,
    DEFAULT_BLUR,
    DEFAULT_THRESHOLD,
    LOCALISE,
    METHODS,
    VIEWS,
)

from ._models import add_model_args, load_model_arg

ORDER = 41


def add_parser(sub) -> str:
    p = sub.add_parser("saliency", help="gradient saliency heat maps with a localisation box",
                       description="Write, for each --image, a PNG with the saliency heat map over the image and "
                                   "the box of the largest salient region. Without --model the probe classifier "
                                   "for --data is used (trained first when none is saved).")
    p.add_argument("--data", "-d", help="dataset folder (class sub-folders); needed when no --model is given")
    p.add_argument("--image", "-i", nargs="+", required=True, help="image file(s) to explain")
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, default=LOCALISE["method"],
                   help=f"saliency method (default {LOCALISE['method']})")
    p.add_argument("--views", choices=VIEWS, default=LOCALISE["views"],
                   help="average the maps over flips and quarter turns (d4) or not (none); default d4")
    p.add_argument("--scales", type=float, nargs="+", default=None,
                   help="run the model at these multiples of its input size and average (default: "
                        + " ".join(f"{s:g}" for s in LOCALISE["scales"]) + " for the probe, 1 for a --model)")
    p.add_argument("--target", default=None, help="class name or index to explain (default: the predicted class)")
    p.add_argument("--samples", type=int, default=16, help="SmoothGrad noisy copies (default 16)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"box threshold, fraction of the map's maximum (default {DEFAULT_THRESHOLD})")
    p.add_argument("--blur", type=float, default=DEFAULT_BLUR,
                   help=f"Gaussian blur sigma as a fraction of the shorter side (default {DEFAULT_BLUR})")
    p.add_argument("--colormap", choices=COLORMAPS, default="inferno")
    p.add_argument("--opacity", type=float, default=0.5, help="heat-map opacity 0..1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", "-o", required=True, help="output folder for the overlay PNGs (created)")
    return "saliency"


def run(args) -> int:
    from augstudio.core.io.layout import planes_of  # deferred: numpy, torch
    from augstudio.core.methods.saliency import compute_saliency, overlay, saliency_box  # deferred: torch
    from augstudio.core.models.loading import load_model  # deferred: torch

    if args.model:
        lm = load_model_arg(args)
    else:
        if not args.data:
            raise DatasetError("saliency: give --data DIR (to train or reuse the probe classifier) or --model SPEC")
        from augstudio.core.workflows.probe import train_probe_job  # deferred: torch

        res = run_with_tqdm(train_probe_job(args.data, device=args.device), desc="probe")
        print(res.line(), file=sys.stderr)
        lm = load_model(res.path, device=args.device)
    target = None
    if args.target is not None:
        classes = lm.classes or []
        if args.target in classes:
            target = classes.index(args.target)
        elif args.target.lstrip("-").isdigit():
            target = int(args.target)
        else:
            raise DatasetError(f"saliency: --target {args.target!r} is neither a class of {lm.name} "
                               f"({', '.join(classes[:20])}) nor a class index")
    from augstudio.core.methods.saliency import LOCALISE  # deferred: torch

    scales = args.scales or (LOCALISE["scales"] if not args.model else (1.0,))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for src in args.image:
        try:
            pic = read_image(src)
            r = compute_saliency(lm, [pic], method=args.method, target=target, samples=args.samples, seed=args.seed,
                                 views=args.views, scales=scales)
        except (ImageError, ModelError) as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            failed += 1
            continue
        m = r.maps[0]
        box = saliency_box(m, args.threshold, args.blur)
        img = overlay(pic, m, args.opacity, args.colormap, box, blur=args.blur)
        name = Path(src).stem + "_saliency.png"
        atomic_write_bytes(out / name, encode(Picture(planes_of(img), "rgb")))
        cls = r.class_name(0, lm.classes)
        print(json.dumps({"image": str(src), "out": str(out / name), "class": cls,
                          "probability": round(float(r.probs[0, r.targets[0]]), 4), "box": box}))
    return 1 if failed and failed == len(args.image) else 0
