"""Test-time augmentation and distillation, as a user runs them: train a small CNN, save it with
``augstudio.save_model`` (torch.export), then ``augstudio tta`` / ``augstudio distill`` on held-out images
in a subprocess. Rewrites the README's TTA blocks and the matching blocks of ``docs/tta_example.md``.

* wafers: a CNN (3 conv layers, global average pooling) trained 30 epochs, without augmentation, on the
  first 10 maps of each class of ``resources/samples/wafers``; evaluated on the other 5 of each with d4.
  The same held-out maps with the project's probe (``--model probe --probe-data`` the 90 training maps).
* digits: ``load_digits`` as 32x32 grey PNGs, a CNN trained 25 epochs on the first 1000, evaluated on the
  other 797 with views the labels are and are not invariant to.
"""

from __future__ import annotations

import csv
import json
import shutil

from . import ROOT, SAMPLES, figure, md_table, pct

DOC = ROOT / "docs" / "tta_example.md"


def _onehot_wafer(path):
    import numpy as np
    import torch
    from PIL import Image

    idx = torch.from_numpy(np.asarray(Image.open(path))).long().clamp(0, 2)  # palette index: 0 off, 1 pass, 2 fail
    return torch.nn.functional.one_hot(idx, 3).permute(2, 0, 1).float()


def _cnn(in_ch: int, n_classes: int, widths=(16, 32, 32), seed: int = 0):
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        a, b, c = widths
        return nn.Sequential(nn.Conv2d(in_ch, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(b, c, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes))


def _fit(model, x, y, epochs: int, batch: int):
    """Adam 3e-3, plain cross-entropy, no augmentation; batch order seeded per epoch."""
    import torch

    torch.set_num_threads(1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(ep))
        for s in range(0, len(x), batch):
            b = perm[s:s + batch]
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _split_wafers(ctx):
    """(classes, training files, held-out folder): maps 0-9 of each class train, 10-14 are copied out."""
    root = SAMPLES / "wafers"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    train, held = [], ctx.tmp / "wafers_held_out"
    train_dir = ctx.tmp / "wafers_train"
    for k, c in enumerate(classes):
        for f in sorted((root / c).glob("*.png")):
            dest = (train_dir if int(f.stem[-3:]) < 10 else held) / c / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            if int(f.stem[-3:]) < 10:
                train.append((f, k))
    return classes, train, train_dir, held


def _tta(ctx, model: str, data, recipe: str, *extra) -> tuple[dict, str]:
    out = ctx.tmp / f"tta_{len(list(ctx.tmp.glob('tta_*.json')))}.json"
    text = ctx.cli("tta", "--model", model, "--data", data, "--tta", recipe, "--device", "cpu", "--json", out, *extra)
    return json.loads(out.read_text()), text


def _distill(ctx, model: str, data, recipe: str, thresholds, tta_report: dict) -> str:
    """``augstudio distill`` at the lowest threshold (labels.csv has every image's merged confidence: kept at
    t means confidence >= t) against the single plain view keeping as many images, its most confident."""
    out = ctx.tmp / f"distill_{data.name}"
    ctx.cli("distill", "--model", model, "--unlabeled", data, "--out", out, "--tta", recipe,
            "--threshold", min(thresholds), "--device", "cpu")
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    truth = {r["source"]: r["source"].split("/")[0] for r in rows}
    plain = sorted(tta_report["items"], key=lambda it: -it["plain_conf"])
    n = len(rows)
    lines = []
    for t in thresholds:
        kept = [r for r in rows if float(r["confidence"]) >= t]
        right = sum(r["label"] == truth[r["source"]] for r in kept)
        top = plain[:len(kept)]
        single = sum(it["plain"] == it["label"] for it in top)
        lines.append([f"{t:g}", f"{len(kept)}/{n} ({pct(len(kept) / n)})", pct(right / len(kept)) if kept else "—",
                      pct(single / len(top)) if top else "—"])
    return md_table(["threshold", "kept (coverage)", "distilled labels correct", "single view at same coverage"],
                    lines)


def _readme_wafer_table(rep: dict) -> str:
    rows, same = [], {"n": 0, "plain": 0.0, "tta": 0.0, "k": 0}
    for c in rep["classes"]:
        pc = rep["per_class"].get(c)
        if not pc:
            continue
        if round(pc["tta"] - pc["plain"], 9) != 0:
            rows.append([c, pc["n"], pct(pc["plain"]), pct(pc["tta"]), f"{(pc['tta'] - pc['plain']) * 100:+.1f} pts"])
        else:
            same["n"] += pc["n"]
            same["plain"] += pc["plain"] * pc["n"]
            same["tta"] += pc["tta"] * pc["n"]
            same["k"] += 1
    if same["k"]:
        rows.append([f"the {same['k']} other classes", same["n"], pct(same["plain"] / same["n"]),
                     pct(same["tta"] / same["n"]), "+0.0 pts"])
    a, b = rep["accuracy_plain"], rep["accuracy_tta"]
    rows.append(["**all**", rep["n"], pct(a), pct(b), f"{(b - a) * 100:+.1f} pts"])
    return md_table(["class", "images", "without TTA", "with d4 TTA", "change"], rows)


@figure("tta_wafers", "a CNN trained on 10 wafer maps per class, saved with augstudio.save_model; `augstudio tta "
        "--tta d4` and `augstudio distill` on the 45 held-out maps (also docs/tta_example.md)", minutes=4)
def tta_wafers(ctx) -> str:
    import torch

    import augstudio

    classes, train, train_dir, held = _split_wafers(ctx)
    x = torch.stack([_onehot_wafer(f) for f, _ in train])
    y = torch.tensor([k for _, k in train])
    model = _fit(_cnn(3, len(classes)), x, y, epochs=30, batch=30)
    path = augstudio.save_model(model, ctx.tmp / "wafer_cnn.pt2", classes, mean=(0.0,) * 3, std=(1.0,) * 3,
                                input_mode="onehot", num_categories=3)
    rel = path.name
    rep, text = _tta(ctx, path, held, "d4")
    distill = _distill(ctx, path, held, "d4", (0.5, 0.7, 0.9), rep)
    prep, _ = _tta(ctx, "probe", held, "d4", "--probe-data", train_dir)
    top = sum(it["plain_conf"] for it in prep["items"]) / len(prep["items"])
    cmd = f"augstudio tta --model {rel} --data wafers_held_out --tta d4"
    text = text[text.index("TTA evaluation"):].replace(str(path), rel).strip()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("report written to"))
    head, sep, matrix = text.partition("predicted):\n")
    if sep:  # the confusion matrix is aligned plain text: keep it in a code block
        text = f"{head}{sep}\n```\n{matrix.strip(chr(10))}\n```"
    ctx.write_block(DOC, "tta_wafers", f"```\n{cmd}\n```\n\n" + text)
    ctx.write_block(DOC, "distill_wafers", distill)
    ctx.write_block(DOC, "tta_wafers_probe", (
        f"With the project's probe classifier (`--model probe --probe-data wafers_train`, which already trains with "
        f"flips and quarter turns) the same held-out maps gave {pct(prep['accuracy_plain'])} without and "
        f"{pct(prep['accuracy_tta'])} with d4 TTA ({len(prep['fixed'])} fixed, {len(prep['broke'])} broken; mean "
        f"top probability without TTA {top:.2f} over {len(prep['classes'])} classes)."))
    fixed, broke = rep["fixed"], rep["broke"]
    return (f"A small CNN (3 conv layers, global average pooling) trained 30 epochs without augmentation on the "
            f"first 10 wafer maps of each class, saved with `augstudio.save_model`, evaluated on the "
            f"{rep['n']} held-out maps (`{cmd}`):\n\n" + _readme_wafer_table(rep)
            + f"\n\nTTA fixed {len(fixed)} image{'s' if len(fixed) != 1 else ''} and broke {len(broke)}.")


def _digits_folders(ctx):
    """load_digits as 32x32 grey PNGs: the first 1000 in digits_train/<d>/, the other 797 in digits_test/<d>/."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    folders = (ctx.tmp / "digits_train", ctx.tmp / "digits_test")
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        im = Image.fromarray(np.round(img / 16 * 255).astype(np.uint8), mode="L").resize((32, 32), Image.BILINEAR)
        dest = folders[i >= 1000] / str(label) / f"digit_{i:04d}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        im.save(dest)
    return folders


DIGIT_VIEWS = [  # (name in the table, --tta argument or the views of a recipe file)
    ("identity", "identity"),
    ("mirror (identity, hflip)", "mirror"),
    ("flips (identity, hflip, vflip)", "flips"),
    ("rotations (4 quarter turns)", "rotations"),
    ("zoom 0.9 / 1.0 / 1.1", [{"scales": [0.9, 1.0, 1.1]}]),
    ("five crops at 87.5%", [{"five_crop": 0.875}]),
]


@figure("tta_digits", "load_digits as PNGs, a CNN saved with augstudio.save_model, `augstudio tta` with views the "
        "labels are and are not invariant to, and `augstudio distill` (also docs/tta_example.md)", minutes=4)
def tta_digits(ctx) -> str:
    import numpy as np
    import torch
    from PIL import Image

    import augstudio

    train_dir, test_dir = _digits_folders(ctx)
    files = sorted(train_dir.glob("*/*.png"))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f), dtype=np.float32) / 255)[None] for f in files])
    y = torch.tensor([int(f.parent.name) for f in files])
    classes = [str(k) for k in range(10)]
    model = _fit(_cnn(1, 10, (16, 32, 64)), x, y, epochs=25, batch=50)
    path = augstudio.save_model(model, ctx.tmp / "digits_cnn.pt2", classes, mean=(0.0,), std=(1.0,), input_mode="gray")
    rows, reports = [], {}
    for name, views in DIGIT_VIEWS:
        arg = views
        if not isinstance(views, str):
            arg = ctx.tmp / f"views_{len(reports)}.json"
            arg.write_text(json.dumps({"augstudio_tta": 1, "views": views, "merge": "mean"}))
        rep, _ = _tta(ctx, path, test_dir, arg)
        reports[name] = (rep, arg)
        rows.append([name, len(rep["views"]), pct(rep["accuracy_plain"]), pct(rep["accuracy_tta"]), len(rep["fixed"]),
                     len(rep["broke"])])
    zoom_rep, zoom_arg = reports["zoom 0.9 / 1.0 / 1.1"]
    distill = _distill(ctx, path, test_dir, zoom_arg, (0.5, 0.7, 0.8, 0.9), zoom_rep)
    table = md_table(["TTA views", "views", "accuracy without TTA", "accuracy with TTA", "fixed", "broke"], rows)
    n_test = reports["identity"][0]["n"]
    ctx.write_block(DOC, "tta_digits", (
        f"`sklearn.datasets.load_digits` (real scanned digits, 8x8, upscaled to 32x32 grey PNGs), a small CNN trained "
        f"for 25 epochs on the first 1000 images, saved with `augstudio.save_model`, evaluated with `augstudio tta` "
        f"on the other {n_test}:\n\n" + table))
    ctx.write_block(DOC, "distill_digits", f"Digits (held-out {n_test}, zoom 0.9 / 1.0 / 1.1):\n\n" + distill)
    rot = reports["rotations (4 quarter turns)"][0]
    mir = reports["mirror (identity, hflip)"][0]
    return (f"Views the labels are not invariant to make things worse: on `load_digits` (a CNN trained on 1000 "
            f"digits, {n_test} held out, `augstudio tta --tta rotations`) quarter-turn TTA takes accuracy from "
            f"{pct(rot['accuracy_plain'])} to {pct(rot['accuracy_tta'])} and mirror TTA to "
            f"{pct(mir['accuracy_tta'])}; every view set is in [docs/tta_example.md](docs/tta_example.md).")
