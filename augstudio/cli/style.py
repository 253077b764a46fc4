"""augstudio style texture|transfer|adain|adain-train|fast-train|fast-apply|randconv|stats ...

Texture synthesis, Gatys style transfer, AdaIN (with decoder training on your own folders), fast style
networks and the weight-free randomisers, each run as a job with a progress bar. Ctrl-C stops cleanly;
nothing half-written is left. Stylising runs through the core's one style dispatcher
(``core.methods.style.dispatch.style_job``), as the GUI's Style panel and the ``stylize`` op do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from augstudio.core.base.errors import OutputError, ParamError
from augstudio.core.base.jobs import run_job, run_with_tqdm
from augstudio.core.io.images import Picture, write_image

ORDER = 40


def _common(p, iterations=None):
    p.add_argument("--seed", type=int, default=0, help="seed for noise, initialisation and batches (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present, else cpu)")
    if iterations is not None:
        p.add_argument("--iterations", "-n", type=int, default=iterations, help=f"iterations (default {iterations})")


def _features(p):
    p.add_argument("--features", choices=("random", "vgg19"), default="random",
                   help="random: weight-free multi-scale random filters (default); vgg19: VGG19 with --weights")
    p.add_argument("--weights", default="imagenet",
                   help="VGG19 weights: imagenet (torchvision's cache), random, or a .pth file (default imagenet)")


def _optim(p):
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="default lbfgs")
    p.add_argument("--lr", type=float, default=None, help="step size (lbfgs 1.0, adam 0.02 by default)")
    p.add_argument("--pyramid", type=int, default=1, help="coarse-to-fine levels, 1 = none (default 1)")
    p.add_argument("--preview-every", type=int, default=0, help=argparse.SUPPRESS)


def add_parser(sub) -> str:
    p = sub.add_parser("style", help="texture synthesis, style transfer, AdaIN, fast style networks",
                       description="Texture synthesis and style transfer on your own images. Every method runs "
                                   "without downloads: weight-free random features, or models trained here.")
    s = p.add_subparsers(dest="style_command", metavar="METHOD", required=True)

    t = s.add_parser("texture", help="synthesise a texture like SRC (Gram matrices; L-BFGS from noise)")
    t.add_argument("src", help="source texture image")
    t.add_argument("--out", "-o", required=True, help="output image (.png)")
    t.add_argument("--size", type=int, nargs="+", default=[256], help="output size: N or H W (default 256)")
    _features(t)
    _optim(t)
    _common(t, 200)

    n = s.add_parser("transfer", help="Gatys et al. style transfer of STYLE onto CONTENT")
    n.add_argument("content")
    n.add_argument("style")
    n.add_argument("--out", "-o", required=True)
    n.add_argument("--alpha", type=float, default=1.0, help="content weight (default 1)")
    n.add_argument("--beta", type=float, default=1e6, help="style weight (default 1e6)")
    n.add_argument("--init", choices=("content", "noise"), default="content")
    n.add_argument("--style-layers", nargs="+", default=None, help="layer names (default: relu1_1 .. relu5_1 "
                   "for vgg19, all scales for random)")
    n.add_argument("--content-layer", default=None, help="default relu4_2 (vgg19) / scale11 (random)")
    n.add_argument("--max-size", type=int, default=512, help="longer side at most (default 512)")
    _features(n)
    _optim(n)
    _common(n, 200)

    a = s.add_parser("adain", help="AdaIN style transfer with a trained decoder (one or several styles)")
    a.add_argument("content")
    a.add_argument("styles", nargs="+", help="one or more style images (interpolated by --mix)")
    a.add_argument("--model", "-m", required=True, help="decoder.pth, or the folder holding decoder.pth and "
                   "vgg_normalised.pth (pytorch-AdaIN's released files, or `augstudio style adain-train` output)")
    a.add_argument("--encoder", default=None, help="vgg_normalised.pth (default: next to the decoder)")
    a.add_argument("--out", "-o", required=True)
    a.add_argument("--alpha", type=float, default=1.0, help="content/style trade-off, 0..1 (default 1)")
    a.add_argument("--mix", type=float, nargs="+", default=None, help="one weight per style image")
    a.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    a.add_argument("--max-size", type=int, default=512)
    a.add_argument("--device", default=None)

    at = s.add_parser("adain-train", help="train an AdaIN decoder on your own content and style folders")
    at.add_argument("content_dir")
    at.add_argument("style_dir")
    at.add_argument("--out", "-o", required=True, help="folder for decoder.pth and vgg_normalised.pth")
    at.add_argument("--encoder", default="random", help="random (no download; default), imagenet, or a file")
    at.add_argument("--batch-size", type=int, default=4)
    at.add_argument("--size", type=int, default=256, help="crop size (default 256)")
    at.add_argument("--lr", type=float, default=1e-4)
    at.add_argument("--style-weight", type=float, default=10.0)
    _common(at, 2000)

    ft = s.add_parser("fast-train", help="train a fast style network (Johnson et al.) for one style image")
    ft.add_argument("content_dir")
    ft.add_argument("style")
    ft.add_argument("--out", "-o", required=True, help="model file (.pth)")
    ft.add_argument("--width", type=int, default=32, help="channels of the first layer (default 32)")
    ft.add_argument("--batch-size", type=int, default=4)
    ft.add_argument("--size", type=int, default=256)
    ft.add_argument("--lr", type=float, default=1e-3)
    ft.add_argument("--style-weight", type=float, default=1e5)
    _features(ft)
    _common(ft, 2000)

    fa = s.add_parser("fast-apply", help="stylise images with a trained fast style network")
    fa.add_argument("model")
    fa.add_argument("inputs", nargs="+", help="images")
    fa.add_argument("--out", "-o", required=True, help="output image (one input) or folder")
    fa.add_argument("--alpha", type=float, default=1.0)
    fa.add_argument("--max-size", type=int, default=None)
    fa.add_argument("--device", default=None)

    rc = s.add_parser("randconv", help="random convolutions (RandConv), no weights (as the stylize op draws them)")
    rc.add_argument("content")
    rc.add_argument("--out", "-o", required=True)
    rc.add_argument("--alpha", type=float, default=1.0, help="style strength 0..1: the mix is drawn from "
                    "[1 - alpha, 1] (default 1)")
    rc.add_argument("--max-size", type=int, default=512, help="stylise at most this many pixels on the longer "
                    "side, then resize back (default 512)")
    _common(rc)

    st = s.add_parser("stats", help="random style statistics (AdaIN with random statistics), no weights")
    st.add_argument("content")
    st.add_argument("--out", "-o", required=True)
    st.add_argument("--alpha", type=float, default=1.0, help="blend with the input, 0..1 (default 1)")
    st.add_argument("--strength", type=float, default=0.5, help="spread of the random statistics (default 0.5)")
    st.add_argument("--model", "-m", default=None, help="optional AdaIN decoder.pth: random statistics at "
                    "relu4_1 instead of on a Laplacian pyramid")
    st.add_argument("--max-size", type=int, default=512, help="as for randconv (default 512)")
    _common(st)
    return "style"


def _write(path, result_image) -> None:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        raise OutputError(f"--out '{path}': give an image file name ending in .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, Picture(result_image, "rgb"))


def _check_out(out, *inputs) -> None:
    o = Path(out).resolve()
    for i in inputs:
        if Path(i).resolve() == o:
            raise OutputError(f"--out '{out}' is an input; augstudio never overwrites its sources")


def _run(job, desc):
    try:
        return run_with_tqdm(job, desc=desc)
    except KeyboardInterrupt:
        job.close()
        raise


def _settings(args, **extra):
    from augstudio.core.methods.style.dispatch import StyleSettings  # deferred: torch

    given = {k: v for k, v in vars(args).items() if k in StyleSettings.__dataclass_fields__}
    for key in ("style_layers", "mix"):
        if given.get(key) is not None:
            given[key] = tuple(given[key])
    return StyleSettings(**{**given, **extra})


def _stylise(method, args, content=None, styles=(), **extra):
    from augstudio.core.methods.style.dispatch import style_job  # deferred: torch

    return _run(style_job(method, _settings(args, **extra), content, styles, args.device), method)


def run(args) -> int:
    cmd = args.style_command
    if cmd == "texture":
        size = args.size * 2 if len(args.size) == 1 else args.size
        if len(size) != 2 or min(size) < 8:
            raise ParamError(f"--size must be N or H W with sides >= 8, got {args.size}")
        _check_out(args.out, args.src)
        r = _stylise("texture", args, styles=[args.src], size=tuple(size))
        _write(args.out, r.image)
        print(f"texture {size[0]}x{size[1]}: style loss {r.losses[0]:.4g} -> {r.losses[-1]:.4g} in "
              f"{r.seconds:.1f} s -> {args.out}")
    elif cmd == "transfer":
        _check_out(args.out, args.content, args.style)
        r = _stylise("transfer", args, args.content, [args.style])
        _write(args.out, r.image)
        print(f"style transfer: loss {r.losses[0]:.4g} -> {r.losses[-1]:.4g} in {r.seconds:.1f} s -> {args.out}")
    elif cmd == "adain":
        _check_out(args.out, args.content, *args.styles)
        r = _stylise("adain", args, args.content, args.styles)
        _write(args.out, r.image)
        print(f"adain: {r.seconds * 1000:.0f} ms -> {args.out}")
    elif cmd in ("randconv", "stats"):
        _check_out(args.out, args.content)
        r = _stylise(cmd, args, args.content)
        _write(args.out, r.image)
        print(f"{cmd}: {r.seconds * 1000:.0f} ms, {r.meta['params']} -> {args.out}")
    elif cmd == "adain-train":
        from augstudio.core.methods.style.adain import adain_train_job  # deferred: torch

        r = _run(adain_train_job(args.content_dir, args.style_dir, args.out, encoder=args.encoder,
                                 iterations=args.iterations, batch_size=args.batch_size, size=args.size,
                                 lr=args.lr, style_weight=args.style_weight, seed=args.seed,
                                 device=args.device), "adain-train")
        for msg in r.meta["skipped"]:
            print(f"skipped: {msg}", file=sys.stderr)
        print(f"adain-train: loss {r.losses[0]:.4g} -> {r.losses[-1]:.4g}; wrote {r.meta['decoder']} and "
              f"{r.meta['encoder']}")
    elif cmd == "fast-train":
        from augstudio.core.methods.style.fast import fast_train_job  # deferred: torch

        r = _run(fast_train_job(args.content_dir, args.style, args.out, features=args.features,
                                weights=args.weights, width=args.width, iterations=args.iterations,
                                batch_size=args.batch_size, size=args.size, lr=args.lr,
                                style_weight=args.style_weight, seed=args.seed, device=args.device), "fast-train")
        for msg in r.meta["skipped"]:
            print(f"skipped: {msg}", file=sys.stderr)
        print(f"fast-train: loss {r.losses[0]:.4g} -> {r.losses[-1]:.4g}; wrote {r.meta['model']}")
    elif cmd == "fast-apply":
        from augstudio.core.methods.style.dispatch import style_job  # deferred: torch

        out = Path(args.out)
        single = len(args.inputs) == 1 and out.suffix != ""
        _check_out(out, *args.inputs)
        settings = _settings(args)
        seconds = 0.0
        for src in args.inputs:
            r = run_job(style_job("fast", settings, src, device=args.device))
            seconds += r.seconds
            _write(out if single else out / (Path(src).stem + ".png"), r.image)
        print(f"fast-apply: {len(args.inputs)} image(s), {seconds * 1000 / len(args.inputs):.0f} ms each -> {out}")
    return 0
