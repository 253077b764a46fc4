"""augstudio mix --a IMG --b IMG --method mixup|cutmix|puzzlemix [--lam L] [--model SPEC] --out DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from augstudio.core.base.errors import ImageError, OutputError
from augstudio.core.io.images import Picture, atomic_write_bytes, encode, read_image

from ._models import MODEL_HELP, add_model_args, load_model_arg

ORDER = 40


def add_parser(sub) -> str:
    p = sub.add_parser("mix", help="mix two images (Mixup, CutMix, PuzzleMix) and write the pictures",
                       description="Mix image A with image B and write mixed.png, the mask, and for PuzzleMix "
                                   "both saliency maps and the transported images, plus mix.json with the "
                                   "label weights and parameters. B is resized to A's size.")
    p.add_argument("--a", required=True, help="first image")
    p.add_argument("--b", required=True, help="second image")
    p.add_argument("--method", "-m", choices=("mixup", "cutmix", "puzzlemix"), default="puzzlemix")
    p.add_argument("--lam", type=float, default=None, help="lambda (share of A) in 0..1; default: drawn from "
                                                            "Beta(alpha, alpha) with --seed")
    p.add_argument("--alpha", type=float, default=1.0, help="Beta(alpha, alpha) for the drawn lambda")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (lambda, box, block count)")
    p.add_argument("--blocks", type=int, choices=(2, 4, 8, 16), default=None,
                   help="PuzzleMix blocks per side (default: 2^k, k uniform in 1..4)")
    p.add_argument("--no-transport", action="store_true", help="PuzzleMix without optimal transport")
    add_model_args(p, model_help="classifier for PuzzleMix saliency (its predicted classes are the labels): "
                                 + MODEL_HELP + "; default: the image-gradient stand-in", short=False)
    p.add_argument("--out", "-o", required=True, help="output folder (created)")
    return "mix"


def _tensor(path):
    from augstudio.core.engine.mixing import mixable  # deferred: torch

    return mixable(read_image(path))


def run(args) -> int:
    import torch  # deferred: torch

    from augstudio.core.engine.mixing import heat, mix_pair  # deferred: torch

    try:
        xa, xb = _tensor(args.a), _tensor(args.b)
    except ImageError as e:
        print(f"augstudio mix: error: {e}", file=sys.stderr)
        return 2
    model = None
    if args.model and args.method == "puzzlemix":
        model = load_model_arg(args)
        xa, xb = xa.to(model.device), xb.to(model.device)
    values = {"alpha": args.alpha}
    if args.method == "puzzlemix":
        values["transport"] = not args.no_transport
        if args.blocks:
            values["block_num"] = args.blocks
    res = mix_pair(xa, xb, args.method, lam=args.lam, seed=args.seed, model=model, **values)

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {out}: {e.strerror or e}") from None

    def save(name, x):
        if x.dim() == 2:
            x = x[None].expand(3, -1, -1)
        pix = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
        atomic_write_bytes(out / name, encode(Picture(pix, "rgb"), "png"))

    save("a.png", xa)
    save("b.png", xb if xb.shape[-2:] == xa.shape[-2:] else _resized(xb, xa))
    save("mixed.png", res["mixed"])
    save("mask.png", res["mask"])
    written = ["a.png", "b.png", "mixed.png", "mask.png"]
    if args.method == "puzzlemix":
        save("saliency_a.png", heat(res["sal_a"]))
        save("saliency_b.png", heat(res["sal_b"]))
        save("transported_a.png", res["transported_a"])
        save("transported_b.png", res["transported_b"])
        written += ["saliency_a.png", "saliency_b.png", "transported_a.png", "transported_b.png"]
    info = {"method": args.method, "a": str(args.a), "b": str(args.b), "weight_a": res["weights"][0],
            "weight_b": res["weights"][1], "params": res["params"],
            "saliency": ("model " + args.model) if model is not None else
            ("image-gradient" if args.method == "puzzlemix" else None)}
    atomic_write_bytes(out / "mix.json", (json.dumps(info, indent=1) + "\n").encode())
    print(f"{args.method}: {res['weights'][0]:.3f} of A + {res['weights'][1]:.3f} of B -> "
          f"{out} ({', '.join(written)}, mix.json)")
    return 0


def _resized(xb, xa):
    import torch  # deferred: torch

    return torch.nn.functional.interpolate(xb[None], size=xa.shape[-2:], mode="bilinear", align_corners=False,
                                           antialias=True)[0]
