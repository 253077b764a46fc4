"""Regenerate every number in the README: rerun the experiment behind each figure and table and rewrite its
block between ``<!-- figure:NAME -->`` and ``<!-- /figure:NAME -->``.

    python -m benchmarks.figures                     # everything (about an hour on 2 cores)
    python benchmarks/figures.py --only localisation,tta_wafers
    python -m benchmarks.figures --list              # the figures, what each reruns, rough minutes
    python -m benchmarks.figures --quick             # quicker settings for the slow speed tables (said in the block)
    python -m benchmarks.figures --no-write          # print the blocks, change no file
    make figures                                     # installs the test + bench extras, then runs all

Each block ends with the command that regenerates it, the machine (CPU, cores, torch and its CPU kernel
set, threads), the load average during the run and the date. The figures live in ``benchmarks/readme_figures/``
(one module per README section); a figure that fails leaves its block as it was and the exit code is 1.
Never part of ``make test``: the figures train models and time code.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.readme_figures import ROOT, Context, load_all  # noqa: E402
from benchmarks.readme_figures.markers import block_names, replace_block  # noqa: E402


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while a figure runs."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def text(self) -> str:
        s = self.samples
        return f"{min(s):.1f}-{max(s):.1f} (mean {sum(s) / len(s):.1f})" if s else "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    try:
        kernels = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        kernels = "?"
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    kernels += f", forced by ATEN_CPU_CAPABILITY={forced}" if forced else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({kernels} kernels), "
            f"Python {platform.python_version()}")


def footer(name: str, seconds: float, load: str, notes: list[str]) -> str:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    minutes = f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
    extra = "".join(f" {n}" for n in notes)
    return (f"<sub>Regenerate: `python -m benchmarks.figures --only {name}`.{extra} Measured {date} on "
            f"{machine()}; load average {load} during the {minutes} run.</sub>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--only", default="", help="comma-separated figure names (see --list); default: all")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--quick", action="store_true", help="quicker settings where a figure has them (said in its block)")
    ap.add_argument("--no-write", action="store_true", help="print the blocks; write no file")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file whose blocks are rewritten")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (models, reports, logs)")
    args = ap.parse_args(argv)

    figures = load_all()
    if args.list:
        for f in figures.values():
            quick = f" [--quick: {f.quick}]" if f.quick else ""
            print(f"{f.name:18s} ~{f.minutes:g} min  {f.summary}{quick}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(figures)
    unknown = [n for n in names if n not in figures]
    if unknown:
        print(f"unknown figure(s): {', '.join(unknown)}; known: {', '.join(figures)}", file=sys.stderr)
        return 2
    in_readme = set(block_names(args.readme.read_text()))
    missing = [n for n in names if n not in in_readme]
    if missing and not args.no_write:
        print(f"{args.readme} has no block for: {', '.join(missing)}", file=sys.stderr)
        return 2

    scratch = Path(tempfile.mkdtemp(prefix="augstudio-figures-"))
    failed = []
    t_all = time.perf_counter()
    for name in names:
        fig = figures[name]
        print(f"== {name}: {fig.summary} (~{fig.minutes:g} min)", flush=True)
        ctx = Context(tmp=scratch / name, quick=args.quick, write=not args.no_write)
        ctx.tmp.mkdir(parents=True)
        t = time.perf_counter()
        try:
            with LoadSampler() as load:
                body = fig.fn(ctx)
        except Exception:  # noqa: BLE001 - one broken figure must not stop the others
            traceback.print_exc()
            failed.append(name)
            continue
        block = body.rstrip() + "\n\n" + footer(name, time.perf_counter() - t, load.text(), ctx.notes)
        if args.no_write:
            print(block)
        else:
            changed = replace_block(args.readme, name, block)
            also = "".join(f", {p.relative_to(ROOT)}" for p in ctx.touched)
            print(f"   {'rewrote' if changed else 'unchanged:'} {args.readme.name} block {name}{also} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    if args.keep:
        print(f"scratch folder kept: {scratch}")
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"done in {(time.perf_counter() - t_all) / 60:.1f} min" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
