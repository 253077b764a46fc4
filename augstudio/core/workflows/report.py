"""The experiment report: a folder with ``results.json``, PNG plots drawn with Pillow (no matplotlib) and
``report.html`` showing the table and the plots. Every file is written atomically.

Plots:

* ``curves.png``: validation accuracy and training loss per epoch, one line per arm (mean over seeds);
* ``reliability_<n>.png``: one reliability diagram per arm (the validation predictions of all seeds
  pooled; bars = accuracy per confidence bin, the diagonal = perfect calibration, a strip below = predictions per bin);
* ``per_class.png``: per-class validation accuracy, one bar per arm (mean over seeds).
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from augstudio.core.base.errors import OutputError
from augstudio.core.io.images import atomic_write_bytes

from . import metrics

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BG = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def color(i: int) -> tuple[int, int, int]:
    return COLORS[i % len(COLORS)]


class _Axes:
    """A minimal plot area: data coordinates -> pixels, ticks, labels."""

    def __init__(self, draw: ImageDraw.ImageDraw, box, xlim, ylim, title="", xlabel="", ylabel=""):
        self.d = draw
        self.x0, self.y0, self.x1, self.y1 = box
        self.xlim, self.ylim = xlim, ylim
        f, fs = _font(14), _font(12)
        self.font, self.small = f, fs
        draw.rectangle(box, outline=INK)
        if title:
            draw.text(((self.x0 + self.x1) / 2, self.y0 - 8), title, fill=INK, font=f, anchor="md")
        if xlabel:
            draw.text(((self.x0 + self.x1) / 2, self.y1 + 24), xlabel, fill=INK, font=fs, anchor="ma")
        if ylabel:
            draw.text((self.x0 - 44, (self.y0 + self.y1) / 2), ylabel, fill=INK, font=fs, anchor="rm")

    def px(self, x, y):
        (a, b), (c, d) = self.xlim, self.ylim
        fx = (x - a) / (b - a) if b != a else 0.5
        fy = (y - c) / (d - c) if d != c else 0.5
        return self.x0 + fx * (self.x1 - self.x0), self.y1 - fy * (self.y1 - self.y0)

    def ticks(self, xs, ys, xfmt="{:g}", yfmt="{:g}"):
        for x in xs:
            px, _ = self.px(x, self.ylim[0])
            self.d.line([(px, self.y0), (px, self.y1)], fill=GRID)
            self.d.text((px, self.y1 + 4), xfmt.format(x), fill=INK, font=self.small, anchor="ma")
        for y in ys:
            _, py = self.px(self.xlim[0], y)
            self.d.line([(self.x0, py), (self.x1, py)], fill=GRID)
            self.d.text((self.x0 - 4, py), yfmt.format(y), fill=INK, font=self.small, anchor="rm")
        self.d.rectangle((self.x0, self.y0, self.x1, self.y1), outline=INK)

    def line(self, xs, ys, fill, width=2):
        pts = [self.px(x, y) for x, y in zip(xs, ys) if y is not None and not math.isnan(y)]
        if len(pts) > 1:
            self.d.line(pts, fill=fill, width=width, joint="curve")
        for p in pts:
            self.d.ellipse((p[0] - 2.5, p[1] - 2.5, p[0] + 2.5, p[1] + 2.5), fill=fill)


def _nice_ticks(lo, hi, n=5):
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _legend(draw, names, x, y):
    f = _font(12)
    for i, n in enumerate(names):
        draw.rectangle((x, y + 18 * i + 3, x + 12, y + 18 * i + 13), fill=color(i))
        draw.text((x + 18, y + 18 * i), n, fill=INK, font=f)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _mean_curve(runs, key):
    arr = [r["curves"][key] for r in runs]
    n = min(len(a) for a in arr)
    return np.nanmean(np.array([a[:n] for a in arr], dtype=np.float64), axis=0).tolist()


def plot_curves(result: dict) -> Image.Image:
    names = [a["name"] for a in result["arms"]]
    W, H = 1000, 392 + 18 * len(names)
    im = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(im)
    epochs = result["config"]["epochs"]
    xt = _nice_ticks(1, epochs, 6) if epochs > 1 else [1]
    xlim = (1, max(epochs, 2))
    ax = _Axes(d, (80, 40, 440, 340), xlim, (0, 1), "validation accuracy (mean over seeds)", "epoch", "")
    ax.ticks([t for t in xt if t == int(t)], [0, 0.2, 0.4, 0.6, 0.8, 1.0], "{:.0f}", "{:.1f}")
    for i, a in enumerate(result["arms"]):
        ys = _mean_curve(a["runs"], "val_accuracy")
        ax.line(range(1, len(ys) + 1), ys, color(i))
    losses = [v for a in result["arms"] for v in _mean_curve(a["runs"], "train_loss") if math.isfinite(v)]
    hi = max(losses) * 1.05 if losses else 1.0
    ax2 = _Axes(d, (540, 40, 900, 340), xlim, (0, hi), "training loss (augmented data)", "epoch", "")
    ax2.ticks([t for t in xt if t == int(t)], _nice_ticks(0, hi, 5), "{:.0f}", "{:.2g}")
    for i, a in enumerate(result["arms"]):
        ys = _mean_curve(a["runs"], "train_loss")
        ax2.line(range(1, len(ys) + 1), ys, color(i))
    _legend(d, names, 80, 384)
    return im


def pooled_predictions(result: dict, arm: dict):
    probs = np.concatenate([np.asarray(r["probs"], dtype=np.float64) for r in arm["runs"]])
    labels = np.concatenate([np.asarray(result["val_labels"]) for _ in arm["runs"]])
    return probs, labels


def plot_reliability(result: dict, arm_index: int) -> Image.Image:
    arm = result["arms"][arm_index]
    probs, labels = pooled_predictions(result, arm)
    r = metrics.reliability(probs, labels, result["config"].get("ece_bins", metrics.ECE_BINS))
    e = metrics.ece(probs, labels, len(r.counts))
    W, H = 460, 500
    im = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(im)
    ticks = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ax = _Axes(d, (70, 40, 430, 380), (0, 1), (0, 1), f"{arm['name']}: ECE {e:.3f}")
    ax.ticks(ticks, ticks, "", "{:.1f}")
    d.text((20, 210), "acc", fill=INK, font=_font(12), anchor="lm")
    # a strip under the diagram: how many predictions fall in each bin
    top = max(r.counts) or 1
    strip = _Axes(d, (70, 390, 430, 440), (0, 1), (0, top), "", "confidence")
    strip.ticks(ticks, [], "{:.1f}")
    d.text((20, 415), "count", fill=INK, font=_font(12), anchor="lm")
    for k, n in enumerate(r.counts):
        if n:
            x0, y0 = strip.px(r.edges[k], n)
            x1, yb = strip.px(r.edges[k + 1], 0)
            d.rectangle((x0 + 1, y0, x1 - 1, yb), fill=(150, 150, 150))
    for k, (n, acc, conf) in enumerate(zip(r.counts, r.accuracy, r.confidence)):
        lo, hi = r.edges[k], r.edges[k + 1]
        if n:
            x0, y0 = ax.px(lo, acc)
            x1, y1 = ax.px(hi, 0)
            d.rectangle((x0 + 1, y0, x1 - 1, y1), fill=color(arm_index), outline=INK)
            # the gap to perfect calibration at the bin's mean confidence
            _, yc = ax.px(lo, conf)
            d.rectangle((x0 + 1, min(y0, yc), x1 - 1, max(y0, yc)), outline=(214, 39, 40), width=2)
    d.line([ax.px(0, 0), ax.px(1, 1)], fill=INK, width=1)
    d.text((75, 45), f"{sum(r.counts)} predictions, {len(r.counts)} bins", fill=INK, font=_font(12))
    return im


def plot_per_class(result: dict) -> Image.Image:
    classes = result["classes"]
    arms = result["arms"]
    k, m = len(classes), len(arms)
    W = max(600, 110 + k * (m * 14 + 24))
    H = 430
    im = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(im)
    ax = _Axes(d, (70, 40, W - 30, 320), (0, k), (0, 1), "per-class validation accuracy (mean over seeds)")
    ax.ticks([], [0, 0.2, 0.4, 0.6, 0.8, 1.0], "{:g}", "{:.1f}")
    bw = min(14.0, (ax.x1 - ax.x0) / k / (m + 1))
    f = _font(12)
    for c in range(k):
        cx, yb = ax.px(c + 0.5, 0)
        for j, a in enumerate(arms):
            v = a["summary"]["per_class_accuracy"][c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            x0 = cx - m * bw / 2 + j * bw
            _, yt = ax.px(0, v)
            d.rectangle((x0, yt, x0 + bw - 1, yb), fill=color(j))
        d.text((cx, yb + 6), classes[c][:14], fill=INK, font=f, anchor="ma")
    _legend(d, [a["name"] for a in arms], 70, 350)
    return im


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def results_json(result: dict) -> bytes:
    return (json.dumps(_json_safe(result), indent=1) + "\n").encode("utf-8")


def check_output(out, data_root) -> Path:
    """Create the report folder; refuse one inside the dataset (it would be scanned as data next time)."""
    out = Path(out)
    data_root = Path(data_root).resolve()
    inside = out.resolve() == data_root or data_root in out.resolve().parents
    if inside:
        raise OutputError(f"{out}: the report folder is inside the dataset {data_root}; it would be scanned as "
                          "data next time. Choose a folder outside the dataset.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the report folder: {e.strerror or e}. Choose another --report "
                          "folder.") from None
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder. Choose another --report folder.")
    return out


def write_report(result: dict, out) -> dict[str, Path]:
    """Write results.json, the PNG plots and report.html into ``out`` (created). Returns the files."""
    out = check_output(out, result["config"]["data"])
    files: dict[str, Path] = {}

    def put(name: str, data: bytes):
        atomic_write_bytes(out / name, data)
        files[name] = out / name

    put("results.json", results_json(result))
    put("curves.png", _png(plot_curves(result)))
    put("per_class.png", _png(plot_per_class(result)))
    rel_names = []
    for i, _ in enumerate(result["arms"]):
        name = f"reliability_{i}.png"
        put(name, _png(plot_reliability(result, i)))
        rel_names.append(name)
    put("report.html", render_html(result, table_rows(result), rel_names).encode("utf-8"))
    return files


def render_html(result: dict, rows: list[list[str]], reliability_files: list[str]) -> str:
    e = html.escape
    cfg = result["config"]
    head = "".join(f"<th>{e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    comps = []
    for c in result.get("comparisons", []):
        parts = []
        for key in ("accuracy", "nll", "ece"):
            v = c[key]
            p = "n/a" if v["p"] is None or (isinstance(v["p"], float) and math.isnan(v["p"])) else f"{v['p']:.3f}"
            parts.append(f"{key}: {v['mean_diff']:+.4f} (p = {p}, {v['verdict']})")
        comps.append(f"<li><b>{e(c['arm'])}</b> vs {e(c['against'])} over {c['accuracy']['n']} paired seed(s): "
                     + e("; ".join(parts)) + "</li>")
    recipes = "".join(
        f"<h3>{e(a['name'])}</h3><pre>{e(json.dumps(a['recipe'], indent=1))}</pre>" for a in result["arms"]
        if a["recipe"] is not None)
    problems = "".join(f"<li>{e(p['path'])}: {e(p['reason'])}</li>" for p in result.get("problems", [])[:200])
    rel = "".join(f'<img src="{e(f)}" alt="reliability diagram {i}">' for i, f in enumerate(reliability_files))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>augstudio evaluate: {e(Path(cfg['data']).name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}img{{max-width:100%;margin:4px}}
pre{{background:#f6f6f6;padding:8px}}</style></head><body>
<h1>Does this recipe help?</h1>
<p>Dataset <code>{e(cfg['data'])}</code>: {len(result['split']['train'])} training and {len(result['split']['val'])}
validation images (stratified split, seed {cfg['split_seed']}, the same for every arm), {len(result['classes'])} classes.
Model <code>{e(cfg['model'])}</code> ({e(cfg['input_mode'])} input {cfg['image_size'][0]}x{cfg['image_size'][1]}),
{cfg['epochs']} epochs, seeds {e(str(cfg['seeds']))}, device {e(cfg['device'])}. Values are mean ± std over seeds;
ECE uses {cfg['ece_bins']} equal-width bins. The differences are paired (same seed, same initial weights, same batch
order); "within noise" means a two-sided paired t-test gives p &ge; 0.05.</p>
<table><tr>{head}</tr>{body}</table>
<ul>{''.join(comps)}</ul>
<h2>Training curves</h2><img src="curves.png" alt="training curves">
<h2>Reliability diagrams</h2>{rel}
<h2>Per-class accuracy</h2><img src="per_class.png" alt="per-class accuracy">
<h2>Recipes</h2>{recipes or '<p>none</p>'}
<h2>Skipped items</h2><ul>{problems or '<li>none</li>'}</ul>
<p>All numbers can be recomputed from <a href="results.json">results.json</a> (validation predictions per run).</p>
</body></html>
"""


# -- the results table (text, markdown, HTML rows) ----------------------------------------------------
def _num(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _pm(d: dict, digits: int = 3) -> str:
    # values read back from results.json have None where they were NaN
    if not _num(d["mean"]):
        return "—"
    std = d["std"] if _num(d["std"]) else 0.0
    return f"{d['mean']:.{digits}f} ± {std:.{digits}f}"


def table_rows(result: dict) -> list[list[str]]:
    """Header + one row per arm: accuracy, NLL, ECE (mean ± std), and the accuracy difference vs no
    augmentation with its verdict."""
    rows = [["arm", "accuracy", "NLL", "ECE", "Δ accuracy vs none (paired)", "p", "verdict"]]
    comps = {c["arm"]: c for c in result.get("comparisons", [])}
    for arm in result["arms"]:
        s = arm["summary"]
        c = comps.get(arm["name"])
        if c is None:
            diff, p, verdict = "—", "—", "baseline"
        else:
            a = c["accuracy"]
            diff = _pm({"mean": a["mean_diff"], "std": a["std_diff"]})
            if _num(a["mean_diff"]):
                diff = ("+" if a["mean_diff"] >= 0 else "") + diff
            p = f"{a['p']:.3f}" if _num(a["p"]) else "—"
            verdict = a["verdict"]
        rows.append([arm["name"], _pm(s["accuracy"]), _pm(s["nll"]), _pm(s["ece"]), diff, p, verdict])
    return rows


def format_table(result: dict) -> str:
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    cfg = result["config"]
    head = (f"{len(result['split']['train'])} train / {len(result['split']['val'])} validation images, "
            f"{len(result['classes'])} classes; model {cfg['model']}, {cfg['epochs']} epochs, "
            f"seeds {cfg['seeds']}; mean ± std over seeds")
    return head + "\n" + "\n".join(lines)


def markdown_table(result: dict) -> str:
    rows = table_rows(result)
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)
