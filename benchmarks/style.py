"""Style benchmark: augstudio's texture synthesis / style transfer vs a plain implementation of the same
loss, and AdaIN / fast style speed. Prints markdown tables.

  python benchmarks/style.py                       # per-iteration at 256, convergence at 128, AdaIN/fast at 256/512
  python benchmarks/style.py --iter-size 256 --converge-size 256 --iterations 60 --device cuda

augstudio gets twice the iteration budget (split over its pyramid levels, --pyramid); what is compared is
the time at which its full-size loss first drops to plain's final loss.

"plain" is the straightforward textbook code written here: the same random multi-scale filters (or the
same VGG19) run as direct convolutions, G = F F^T and E_l = sum (G - Ghat)^2 / (4 N^2 M^2) written out,
and torch's L-BFGS (strong Wolfe) on the full-size image from the same noise. augstudio's defaults:
fused scaled Gram loss with a one-product backward, FFT convolution from 11 px kernels with the kernel
spectra kept between evaluations, L-BFGS one iteration per step (so a job can report and cancel) without
re-evaluating the point the line search already evaluated, the texture's clamp inside the loss (no
projection that would break L-BFGS's curvature pairs), optionally a coarse-to-fine pyramid (--pyramid).

Targets: per iteration no slower than plain; reach plain's final loss in at most half its time.
Weights are random (no download): VGG19 with seeded He init; AdaIN encoder/decoder random; fast style
network random (speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augstudio.core.base.jobs import run_job  # noqa: E402
from augstudio.core.methods.style import adain as A  # noqa: E402
from augstudio.core.methods.style import fast as FS  # noqa: E402
from augstudio.core.methods.style.common import resize, to_float  # noqa: E402
from augstudio.core.methods.style.features import RandomMultiScaleFeatures, VGGFeatures  # noqa: E402
from augstudio.core.methods.style.optimize import nst_job, texture_job  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


# -- the straightforward implementation -----------------------------------------------------------------

def plain_random_features(net: RandomMultiScaleFeatures, x):
    x = (x - net.mean) / net.std
    out = {}
    for s, name in zip(net.sizes, net.layers):
        if s <= min(x.shape[-2:]):
            out[name] = F.relu(F.conv2d(x, getattr(net, f"w{s}")))
    return out


def plain_gram(f):
    m = f[0].reshape(f.shape[1], -1)
    return m @ m.t()


def plain_style_loss(feats, grams, n_layers):
    total = 0.0
    for k, f in feats.items():
        n, m = f.shape[1], f.shape[2] * f.shape[3]
        total = total + (1.0 / n_layers) * ((plain_gram(f) - grams[k]) ** 2).sum() / (4 * n**2 * m**2)
    return total


def plain_run(extract, loss_of, x0, evals, dev):
    """torch L-BFGS with strong Wolfe on the full image, clamped to 0..1 before every evaluation;
    returns [(seconds, loss)] per evaluation."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=evals, max_eval=evals, history_size=50, tolerance_grad=0,
                            tolerance_change=0, line_search_fn="strong_wolfe")
    trace, t0 = [], [None]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)  # keep the image in range, as the PyTorch style-transfer tutorial does
        opt.zero_grad()
        loss = loss_of(extract(x))
        loss.backward()
        sync(dev)
        trace.append((time.perf_counter() - t0[0], float(loss.detach())))
        return loss

    t0[0] = time.perf_counter()
    opt.step(closure)
    return trace


def per_eval_seconds(fn, x, reps, dev):
    times = []
    for _ in range(reps + 1):
        xx = x.clone().requires_grad_(True)
        sync(dev)
        t = time.perf_counter()
        fn(xx).backward()
        sync(dev)
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def ours_trace(job, n_levels):
    """Run an augstudio job; [(seconds, loss)] for the finest level's iterations (comparable losses)."""
    trace, t0 = [], time.perf_counter()

    def on(p):
        if p.preview and p.preview.get("level") == n_levels:
            trace.append((time.perf_counter() - t0, p.preview["loss"]))
    run_job(job, on)
    return trace


def time_to(trace, target):
    for t, loss in trace:
        if loss <= target:
            return t
    return None


# -- peak memory --------------------------------------------------------------------------------------

class PeakRSS:
    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()

    def __enter__(self):
        self.t = threading.Thread(target=self._poll, daemon=True)
        self.t.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *a):
        self._stop.set()
        self.t.join()

    @property
    def mib(self):
        return (self.peak - self.base) / 2**20


def peak_memory(fn, dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        sync(dev)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as m:
        fn()
    return m.mib


# -- main ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--iter-size", type=int, default=256, help="size for seconds per iteration (default 256)")
    ap.add_argument("--converge-size", type=int, default=128, help="size for time-to-loss (default 128)")
    ap.add_argument("--iterations", type=int, default=40, help="plain L-BFGS evaluations (default 40)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--pyramid", type=int, default=1, help="augstudio's pyramid levels in the convergence runs")
    ap.add_argument("--fast-sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--memory-size", type=int, default=512)
    ap.add_argument("--skip", nargs="*", default=[], help="any of: iter converge vgg adain fast memory")
    ap.add_argument("--json", default=None, help="also write every number here (benchmarks/figures.py reads it)")
    args = ap.parse_args(argv)
    out: dict = {"device": args.device}
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    from skimage import data

    brick = to_float(torch.from_numpy(data.brick()).unsqueeze(0).contiguous(), dev)
    coffee = to_float(torch.from_numpy(data.coffee()).permute(2, 0, 1).contiguous(), dev)
    astro = to_float(torch.from_numpy(data.astronaut()).permute(2, 0, 1).contiguous(), dev)
    rnd = RandomMultiScaleFeatures(seed=0).to(dev)
    print(f"device {dev}, torch threads {torch.get_num_threads()}\n")
    out["threads"] = torch.get_num_threads()

    # 1. seconds per iteration (one forward + backward of the loss) ------------------------------------
    if "iter" not in args.skip:
        S = args.iter_size
        rows = []
        src = resize(brick, (S, S))
        x = torch.rand(1, 3, S, S, device=dev)
        with torch.no_grad():
            g_plain = {k: plain_gram(v) for k, v in plain_random_features(rnd, src).items()}
            from augstudio.core.methods.style.losses import content_loss, fused_style_loss, style_targets

            t_ours = style_targets(rnd(src))
        n = len(g_plain)
        tp = per_eval_seconds(lambda z: plain_style_loss(plain_random_features(rnd, z), g_plain, n), x, args.reps, dev)
        to = per_eval_seconds(lambda z: fused_style_loss(rnd(z), t_ours, {k: 1 / n for k in t_ours}), x, args.reps, dev)
        rows.append(("texture, random multi-scale", tp, to))
        c = resize(astro, (S, S))
        with torch.no_grad():
            p_plain = plain_random_features(rnd, c)["scale11"]
        tp = per_eval_seconds(lambda z: (lambda f: 0.5 * ((f["scale11"] - p_plain) ** 2).sum()
                                         + 1e6 * plain_style_loss(f, g_plain, n))(plain_random_features(rnd, z)),
                              x, args.reps, dev)
        to = per_eval_seconds(lambda z: (lambda f: content_loss(f["scale11"], p_plain)
                                         + 1e6 * fused_style_loss(f, t_ours, {k: 1 / n for k in t_ours}))(rnd(z)),
                              x, args.reps, dev)
        rows.append(("NST, random multi-scale", tp, to))
        if "vgg" not in args.skip:
            vgg = VGGFeatures(weights="random").to(dev)
            layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
            with torch.no_grad():
                fv = vgg(src)
                gv = {k: plain_gram(fv[k]) for k in layers}
                tv = style_targets({k: fv[k] for k in layers})
                pv = vgg(c)["relu4_2"]

            def plain_vgg(z, content):
                f = vgg(z)
                ls = plain_style_loss({k: f[k] for k in layers}, gv, len(layers))
                return ls if not content else 0.5 * ((f["relu4_2"] - pv) ** 2).sum() + 1e3 * ls

            def ours_vgg(z, content):
                f = vgg(z)
                ls = fused_style_loss({k: f[k] for k in layers}, tv, {k: 0.2 for k in layers})
                return ls if not content else content_loss(f["relu4_2"], pv) + 1e3 * ls

            rows.append(("texture, VGG19 (random weights)", per_eval_seconds(lambda z: plain_vgg(z, False), x, args.reps, dev),
                         per_eval_seconds(lambda z: ours_vgg(z, False), x, args.reps, dev)))
            rows.append(("NST, VGG19 (random weights)", per_eval_seconds(lambda z: plain_vgg(z, True), x, args.reps, dev),
                         per_eval_seconds(lambda z: ours_vgg(z, True), x, args.reps, dev)))
        print(f"### Seconds per iteration (forward + backward), {S}x{S}\n")
        print("| loss | plain (s) | augstudio (s) | speed-up |\n|---|---:|---:|---:|")
        for name, tp, to in rows:
            print(f"| {name} | {tp:.3f} | {to:.3f} | {tp / to:.2f}x |")
        print()
        out["iteration"] = {"size": S, "rows": [{"loss": n, "plain_s": tp, "augstudio_s": to} for n, tp, to in rows]}

    # 2. time to reach plain's final loss ------------------------------------------------------------
    if "converge" not in args.skip:
        S = args.converge_size
        rows = []
        src = resize(brick, (S, S))
        from augstudio.core.methods.style.optimize import _noise

        x0 = _noise((S, S), 0, dev, like=src)
        with torch.no_grad():
            g_plain = {k: plain_gram(v) for k, v in plain_random_features(rnd, src).items()}
        n = len(g_plain)
        tr_plain = plain_run(lambda z: plain_random_features(rnd, z), lambda f: plain_style_loss(f, g_plain, n),
                             x0, args.iterations, dev)
        target = tr_plain[-1][1]
        tr_ours = ours_trace(texture_job(src, size=(S, S), features=rnd, iterations=2 * args.iterations,
                                         pyramid=args.pyramid, seed=0, device=dev, preview_every=0,
                                         max_source_size=None), args.pyramid)
        rows.append(("texture (brick)", tr_plain, tr_ours, target))

        c = resize(astro, (S, S))
        s_img = resize(coffee, (S, S))
        with torch.no_grad():
            g_s = {k: plain_gram(v) for k, v in plain_random_features(rnd, s_img).items()}
            p = plain_random_features(rnd, c)["scale11"]
        beta = 1e6
        tr_plain = plain_run(lambda z: plain_random_features(rnd, z),
                             lambda f: 0.5 * ((f["scale11"] - p) ** 2).sum() + beta * plain_style_loss(f, g_s, n),
                             c, args.iterations, dev)
        target = tr_plain[-1][1]
        tr_ours = ours_trace(nst_job(c, s_img, features=rnd, content_layer="scale11", beta=beta,
                                     iterations=2 * args.iterations, pyramid=args.pyramid, max_size=None,
                                     device=dev, preview_every=0), args.pyramid)
        rows.append(("NST (astronaut x coffee)", tr_plain, tr_ours, target))
        print(f"### Time to reach the plain implementation's final loss, {S}x{S}, random multi-scale features, "
              f"{args.iterations} plain L-BFGS evaluations, augstudio pyramid {args.pyramid}\n")
        print("| task | plain: final loss | plain: time (s) | augstudio: time to that loss (s) | augstudio: final loss "
              "| ratio |\n|---|---:|---:|---:|---:|---:|")
        for name, tp, to, target in rows:
            t_hit = time_to(to, target)
            hit = f"{t_hit:.1f}" if t_hit is not None else f"not reached ({to[-1][0]:.1f})"
            ratio = f"{t_hit / tp[-1][0]:.2f}" if t_hit is not None else "-"
            print(f"| {name} | {target:.4g} | {tp[-1][0]:.1f} | {hit} | {to[-1][1]:.4g} | {ratio} |")
        print()
        out["converge"] = {"size": S, "iterations": args.iterations, "rows": [
            {"task": n, "plain_s": tp[-1][0], "augstudio_s": time_to(to, target),
             "ratio": (time_to(to, target) / tp[-1][0]) if time_to(to, target) is not None else None}
            for n, tp, to, target in rows]}

    # 3. AdaIN and fast style, ms per image ------------------------------------------------------------
    rows = []
    if "adain" not in args.skip:
        gen = torch.Generator().manual_seed(0)
        model = A.AdaIN(A.encoder_from_torchvision("random"), A.init_random_(A.make_decoder(), gen)).to(dev).eval()
        for S in args.fast_sizes:
            c, s = resize(astro, (S, S)), resize(coffee, (S, S))
            rows.append(("AdaIN", S, _ms(lambda c=c, s=s: model.stylize(c, [s]), args.reps, dev)))
    if "fast" not in args.skip:
        net = FS.TransformerNet(32).to(dev).eval()
        for S in args.fast_sizes:
            c = resize(astro, (S, S))
            rows.append(("fast style (width 32)", S, _ms(lambda c=c: FS.fast_stylize(net, c), args.reps, dev)))
    if rows:
        print("### Feed-forward stylisation, ms per image\n")
        print("| method | size | ms |\n|---|---:|---:|")
        for name, S, ms in rows:
            print(f"| {name} | {S} | {ms:.0f} |")
        print()
        out["feed_forward"] = [{"method": n, "size": S, "ms": ms} for n, S, ms in rows]

    # 4. peak memory at 512 -----------------------------------------------------------------------------
    if "memory" not in args.skip:
        S = args.memory_size
        rows = []
        src = resize(brick, (S, S))
        rows.append(("texture, random features, 2 iterations", peak_memory(lambda: run_job(texture_job(
            src, size=(S, S), features=rnd, iterations=2, pyramid=1, device=dev, preview_every=0)), dev)))
        rows.append(("plain texture, 2 evaluations", peak_memory(lambda: plain_run(
            lambda z: plain_random_features(rnd, z),
            lambda f: plain_style_loss(f, {k: plain_gram(v).detach() for k, v in plain_random_features(rnd, src).items()}, 8),
            torch.rand(1, 3, S, S, device=dev), 2, dev), dev)))
        if "adain" not in args.skip:
            c = resize(astro, (S, S))
            rows.append(("AdaIN", peak_memory(lambda: model.stylize(c, [c]), dev)))
        if "fast" not in args.skip:
            rows.append(("fast style", peak_memory(lambda: FS.fast_stylize(net, resize(astro, (S, S))), dev)))
        kind = "GPU memory allocated" if dev.type == "cuda" else "process RSS growth"
        print(f"### Peak memory at {S}x{S} ({kind})\n")
        print("| work | MiB |\n|---|---:|")
        for name, mib in rows:
            print(f"| {name} | {mib:.0f} |")
        print()
        out["memory"] = {"size": S, "kind": kind, "rows": [{"work": n, "mib": mib} for n, mib in rows]}
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def _ms(fn, reps, dev):
    with torch.no_grad():
        fn()
        sync(dev)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            sync(dev)
            times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


if __name__ == "__main__":
    main()
