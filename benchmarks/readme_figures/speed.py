"""The README's speed tables: each benchmark script runs in a subprocess (as ``python benchmarks/X.py``) and
writes its numbers with ``--json``; the tables are made from those. Timings on a shared machine move with its
load, which each block states; compare ratios from the same run."""

from __future__ import annotations

import json

from . import figure, md_table


def _json(ctx, script: str, *args, timeout: float | None = None) -> dict:
    out = ctx.tmp / (script.rsplit("/", 1)[-1].replace(".py", "") + f"_{len(list(ctx.tmp.glob('*.json')))}.json")
    ctx.script(script, *args, "--json", out, timeout=timeout)
    return json.loads(out.read_text())


def _quick(ctx, args: list, quick_args: list) -> list:
    if ctx.quick and quick_args:
        ctx.notes.append(f"Quick settings (`--quick`): `{' '.join(map(str, quick_args))}`.")
        return args + quick_args
    return args


@figure("speed_chain", "benchmarks/chain.py twice, on fresh inputs, then in blocks (reference chain, batched path vs kornia)",
        minutes=5, quick="--runs 50 (blocks: --runs 100)")
def speed_chain(ctx) -> str:
    args = _quick(ctx, ["--only", "chain,batched"], ["--runs", "50"])
    runs = [_json(ctx, "benchmarks/chain.py", *args) for _ in range(2)]
    names = list(runs[0]["chain"])
    rows = []
    for name in names:
        r = [run["chain"][name] for run in runs]
        ms = " / ".join(f"{x['median_ms']:.2f}" for x in r)
        p95 = " / ".join(f"{x['p95_ms']:.2f}" for x in r)
        cpu = " / ".join(f"{x['cpu_median_ms']:.2f}" for x in r)
        if name == "augstudio":
            sp = "1.00x"
        elif "preview" in name:
            sp = "—"
        else:
            sp = " / ".join(f"{x['speedup_vs']:.2f}x" for x in r)
        rows.append([name, ms, p95, cpu, sp])
    fresh = _json(ctx, "benchmarks/chain.py", "--only", "chain", "--fresh-input", "--runs", "50" if ctx.quick else "200")
    base = fresh["chain"]["augstudio"]["median_ms"]
    fresh_text = ", ".join(f"{name} {x['median_ms']:.2f} ms" + ("" if name == "augstudio" else f" ({x['median_ms'] / base:.2f}x)")
                           for name, x in fresh["chain"].items() if "preview" not in name)
    blk = _json(ctx, "benchmarks/chain.py", "--only", "chain", "--block", "25", "--runs", "100" if ctx.quick else "400")
    if ctx.quick:
        ctx.notes.append("The run in blocks: `--runs 100`.")
    base = blk["chain"]["augstudio"]["median_ms"]
    blocks = ", ".join(f"{name} {x['median_ms']:.2f} ms" + ("" if name == "augstudio" else f" ({x['median_ms'] / base:.2f}x)")
                       for name, x in blk["chain"].items() if "preview" not in name)
    b = [run["batched"] for run in runs]
    batched = ", ".join(f"run {i + 1}: augstudio {x['augstudio']['images_per_s']:.0f} vs kornia "
                        f"{x['kornia']['images_per_s']:.0f} images/s" for i, x in enumerate(b))
    head = runs[0]
    return (f"**Reference chain** (`python benchmarks/chain.py --only chain,batched`, run twice; 512x512 astronaut, "
            f"single thread, median of {head['runs']}; each cell: run 1 / run 2):\n\n"
            + md_table(["library", "ms/image (median)", "p95 ms", "CPU ms (median)", "augstudio speed-up"], rows)
            + "\n\nThe table calls the libraries strictly in turn, one call each per round in a new random order "
            "(seeded), so every call starts in the caches and heap another library left (torchvision's and kornia's "
            "calls take hundreds of fresh pages each) and each library follows each other about equally often. "
            "With each call handed a freshly written copy of the input, as a decoder hands it over (`--fresh-input`, "
            f"untimed; median of {fresh['runs']}): {fresh_text}. Called as a training loop "
            f"calls one library, 25 calls in a row per round (`--block 25`, median of {blk['runs']}): {blocks}."
            + f"\n\nBatched path (`Recipe.apply_batch`) against kornia at batch {b[0]['batch']} on the CPU: {batched}.")


@figure("speed_ops", "benchmarks/chain.py --only ops (every per-image op alone vs albumentations, torchvision v2)",
        minutes=2, quick="--op-runs 15")
def speed_ops(ctx) -> str:
    args = _quick(ctx, ["--only", "ops", "--op-runs", "100"], ["--op-runs", "15"])
    r = _json(ctx, "benchmarks/chain.py", *args)
    rows, faster, slower = [], [], []
    for name, row in r["ops"].items():
        ours = row["augstudio"]["cpu_median_ms"]

        def cell(lib, row=row):
            return f"{row[lib]['cpu_median_ms']:.3f}" if lib in row else "-"

        def ratio(lib, row=row, ours=ours):
            return f"{row[lib]['cpu_median_ms'] / max(ours, 1e-6):.2f}x" if lib in row else "-"

        if "albumentations" in row and not name.startswith("("):
            (faster if row["albumentations"]["cpu_median_ms"] >= ours else slower).append(name)
        rows.append([name, f"{ours:.3f}", cell("albumentations"), cell("torchvision"), ratio("albumentations"),
                     ratio("torchvision"), row.get("note", "") or ""])
    runs = next(iter(r["ops"].values()))["augstudio"]["runs"]  # what ran (--quick adds a second --op-runs)
    return (f"**Each op alone** (`python benchmarks/chain.py --only ops`; 512x512 astronaut, one thread, thread CPU "
            f"ms per image, median of {runs} interleaved runs, one call of each library per round in a random order; "
            f"a ratio above 1 means augstudio is faster):\n\n"
            + md_table(["op", "augstudio", "albumentations", "torchvision v2", "vs albumentations", "vs torchvision",
                        "note"], rows, align="lrrrrrl")
            + f"\n\nAt least as fast as albumentations: {len(faster)} of {len(faster) + len(slower)} ops with an "
            f"equivalent ({', '.join(faster)}). Slower: {_slower_by_kind(slower, r['ops'])}.")


def _slower_by_kind(slower: list, ops: dict) -> str:
    """The slower ops, split by whether albumentations computes the same thing (a note saying what ours
    computes instead, or another filter, marks the ones that differ)."""
    notes = {n: ops[n].get("note") or "" for n in slower}
    other = [n for n in slower if "(ours:" in notes[n] or "another filter" in notes[n]]
    same = [n for n in slower if n not in other]
    return (f"{len(other)} where albumentations computes something else ({', '.join(other) or 'none'}), "
            f"{len(same)} where both compute the same ({', '.join(same) or 'none'})")


@figure("speed_puzzlemix", "benchmarks/puzzlemix.py (batched PuzzleMix vs the official procedure with GCO)",
        minutes=6, quick="--skip-224 --repeats 1")
def speed_puzzlemix(ctx) -> str:
    args = _quick(ctx, ["--threads", "1", "--repeats", "3"], ["--skip-224", "--repeats", "1"])
    r = _json(ctx, "benchmarks/puzzlemix.py", *args)
    rows, batches = [], []
    for row in r["rows"]:
        if row["batch"] not in batches:
            batches.append(row["batch"])
    mix = {}
    for batch in batches:
        per = [x for x in r["rows"] if x["batch"] == batch]
        blocks = [x for x in per if "x" in x["what"] and x["what"][0].isdigit()]
        mean = next(x for x in per if x["what"].startswith("mean"))
        m = next(x for x in per if x["what"].startswith("mixup"))
        mix[batch] = (m["augstudio_ms"], m["reference_ms"])
        sp = [x["reference_ms"] / x["augstudio_ms"] for x in blocks]
        rows.append([batch, f"{mean['augstudio_ms']:.0f}", f"{mean['reference_ms']:.0f}",
                     f"{mean['reference_ms'] / mean['augstudio_ms']:.1f}x", f"{min(sp):.1f}-{max(sp):.1f}x"])
    slower = [f"{p['blocks']} at {p['batch']} ({p['solve_ms']:.0f} vs {p['gco_ms']:.0f} ms)" for p in r["parts"]
              if p["solve_ms"] > p["gco_ms"]]
    small = batches[0]
    e = r["energy"]
    return (f"**PuzzleMix** (`python benchmarks/puzzlemix.py --threads 1`; CPU, 1 thread, ms per batch, median of "
            f"{r['repeats']}, mean over block counts 2, 4, 8, 16):\n\n"
            + md_table(["batch", "augstudio", "official procedure (GCO per image + dense transport)", "speed-up",
                        "speed-up per block count"], rows)
            + f"\n\nMixup / CutMix take {mix[small][0]:.2f} / {mix[small][1]:.2f} ms at {small}. "
            + (f"The batched mask solve alone is slower than GCO's C++ at {'; '.join(slower)}; the gain comes from "
               "the batched transport. " if slower else "The batched mask solve is faster than GCO's at every size. ")
            + f"Mask energy on these problems: within 1% of GCO's on {100 * e['within_1pct']:.1f}% of {e['n']} "
            f"(median gap {e['median']:+.1e}).")


@figure("speed_style", "benchmarks/style.py (texture synthesis / style transfer vs a plain implementation)",
        minutes=15, quick="--skip vgg --reps 1 --iterations 20")
def speed_style(ctx) -> str:
    args = _quick(ctx, ["--threads", "1"], ["--skip", "vgg", "--reps", "1", "--iterations", "20"])
    r = _json(ctx, "benchmarks/style.py", *args)
    parts = []
    if "iteration" in r:
        it = r["iteration"]
        rows = [[x["loss"], f"{x['plain_s']:.3f}", f"{x['augstudio_s']:.3f}", f"{x['plain_s'] / x['augstudio_s']:.2f}x"]
                for x in it["rows"]]
        parts.append(f"Seconds per iteration (loss forward + backward), {it['size']}x{it['size']}:\n\n"
                     + md_table(["loss", "plain implementation (s)", "augstudio (s)", "speed-up"], rows))
    if "converge" in r:
        c = r["converge"]
        txt = ", ".join(f"{x['task']} {x['ratio']:.2f}x of its time" if x["ratio"] is not None else
                        f"{x['task']} not reached" for x in c["rows"])
        parts.append(f"Time to reach the plain version's final loss ({c['size']}x{c['size']}, both from the same "
                     f"noise, L-BFGS, {c['iterations']} plain evaluations; target: at most 0.5x): {txt}.")
    if "feed_forward" in r:
        parts.append("Feed-forward stylisation: " + ", ".join(f"{x['method']} {x['ms']:.0f} ms at {x['size']}"
                                                              for x in r["feed_forward"]) + ".")
    if "memory" in r:
        m = r["memory"]
        parts.append(f"Peak memory ({m['kind']}) at {m['size']}x{m['size']}: "
                     + ", ".join(f"{x['work']} {x['mib']:.0f} MiB" for x in m["rows"]) + ".")
    return ("**Style** (`python benchmarks/style.py --threads 1`; CPU, 1 thread):\n\n" + "\n\n".join(parts))


@figure("speed_gui", "benchmarks/gui.py (launch, event-loop latency, preview, memory on 10,000 JPEGs)",
        minutes=6, quick="--n 2000")
def speed_gui(ctx) -> str:
    args = _quick(ctx, [], ["--n", "2000"])
    r = _json(ctx, "benchmarks/gui.py", *args, "--folder", ctx.tmp / "images")

    def g(key, fmt):
        return fmt.format(r[key]) if isinstance(r.get(key), (int, float)) else "n/a"

    rows = [["launch to first painted thumbnails (torch not yet loaded)", g("launch_to_first_thumbnails_s", "{:.2f} s"),
             "< 1.5 s"],
            ["event-loop p99 while thumbnails load / while an export runs",
             g("loop_p99_ms_thumbnails", "{:.1f} ms") + " / " + g("loop_p99_ms_export", "{:.1f} ms"), "< 50 ms"],
            ["preview p95, reference chain at 512x512 incl. QImage", g("preview_p95_ms_512", "{:.1f} ms"), "< 30 ms"],
            [f"resident memory after scrolling all {r['n_images']:,}, over the idle app",
             g("rss_over_idle_mb", "{:+.1f} MB"), "< 400 MB"]]
    return (f"**App** (`python benchmarks/gui.py`; a folder of {r['n_images']:,} JPEGs, offscreen):\n\n"
            + md_table(["measure", "result", "target"], rows, "lll"))


@figure("speed_faults", "benchmarks/faults.py (bad inputs, kill -9 during export, GUI under load) and "
        "benchmarks/scan.py (100,000 files)", minutes=6, quick="faults --images 2000 --seconds 20; scan --files 20000")
def speed_faults(ctx) -> str:
    fargs = _quick(ctx, [], ["--images", "2000", "--seconds", "20"])
    f = _json(ctx, "benchmarks/faults.py", *fargs)
    s = _json(ctx, "benchmarks/scan.py", *([] if not ctx.quick else ["--files", "20000"]))
    b, k, gui = f.get("bad_inputs", {}), f.get("kills", {}), f.get("gui", {})
    rss = gui.get("pass_rss_mb", {})
    passes = ", ".join(f"{float(v):.0f}" for _, v in sorted(rss.items(), key=lambda kv: int(kv[0])))
    full = next(x for x in s["rows"] if x["what"].startswith("augstudio scan (stat"))
    tv = next((x for x in s["rows"] if x["what"].startswith("torchvision")), None)
    return (f"**Faults** (`python benchmarks/faults.py`): {b.get('handled')}/{b.get('tried')} bad inputs handled; "
            f"{k.get('survived')}/{k.get('kills')} `kill -9` during a 2-worker export survived with "
            f"{k.get('bytes_lost')} bytes lost and {len(k.get('leftovers', []))} temporary files left; GUI event-loop "
            f"p50 {gui.get('p50', float('nan')):.1f} ms, p99 {gui.get('p99', float('nan')):.1f} ms, max "
            f"{gui.get('max', float('nan')):.0f} ms while an export (2 workers), a texture job and thumbnail loading "
            f"run together on {gui.get('images', 0):,} images; GUI memory per thumbnail pass (MB): {passes}. "
            f"**Scan** (`python benchmarks/scan.py`): {s['files']:,} files in {full['best_s']:.2f} s (best of "
            f"{s['repeat']}, every file stat-ed)" + (f"; torchvision's `make_dataset` {tv['best_s']:.2f} s." if tv
                                                     else "."))


def _printed(text: str, keep=("|", "Ray overhead", "driver", "load average", "2000 outputs", "outputs of")) -> str:
    """The tables and summary lines a benchmark script prints (its progress lines left out)."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in (x for x in lines if x.startswith(keep)):
        if out and out[-1].startswith("|") != line.startswith("|"):
            out.append("")  # a table is its own markdown block: blank lines around it
        out.append(line)
    return "\n".join(out)


@figure("speed_export_threads", "benchmarks/export_threads.py (2,000 outputs under 2 busy processes: default "
        "threads vs OMP_NUM_THREADS=1, -j 1 / -j 2, plain and mixup)", minutes=14, quick="--repeat 1")
def speed_export_threads(ctx) -> str:
    args = _quick(ctx, [], ["--repeat", "1"])
    text = ctx.script("benchmarks/export_threads.py", *args)
    return ("**Export on a busy machine** (`python benchmarks/export_threads.py`): `augstudio export` with torch's "
            "default threads against `OMP_NUM_THREADS=1` set by hand (exports run one torch thread per worker; "
            "target: within 1.3x).\n\n" + _printed(text))


@figure("speed_ray", "benchmarks/ray_export.py (2,000 images x 2 copies: local -j 1 / -j 2 vs --engine ray, "
        "Ray Data, the driver's cap, N nodes on paper)", minutes=12, quick="--repeat 1")
def speed_ray(ctx) -> str:
    args = _quick(ctx, [], ["--repeat", "1"])
    text = ctx.script("benchmarks/ray_export.py", *args, timeout=3600)
    return ("**Ray** (`python benchmarks/ray_export.py`; every tree checked byte for byte against the local "
            "engine's; details in [benchmarks/README.md](benchmarks/README.md)):\n\n" + _printed(text))
