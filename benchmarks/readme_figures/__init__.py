"""The README's figures, one function per figure (``benchmarks/figures.py`` runs them and rewrites the README).

A figure is a function ``fn(ctx) -> str`` registered with ``@figure(name, ...)``: it reruns the experiment
behind one README block through the public API (``Recipe``, the ``augstudio`` CLI in a subprocess, the
workflows) and returns the block's markdown. ``figures.py`` adds the footer (the command that regenerates
it, the machine, the load average during the run and the date) and writes it between the README's
``<!-- figure:NAME -->`` and ``<!-- /figure:NAME -->`` markers. A figure may also rewrite blocks of other
documents (``ctx.write_block``) and copy files into the repository (``ctx.copy``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"


@dataclass
class Figure:
    name: str
    fn: Callable
    summary: str
    minutes: float  # rough cost on a 2-core machine
    quick: str = ""  # what --quick changes, '' when nothing


REGISTRY: dict[str, Figure] = {}


def figure(name: str, summary: str, minutes: float, quick: str = ""):
    def deco(fn):
        REGISTRY[name] = Figure(name, fn, summary, minutes, quick)
        return fn
    return deco


@dataclass
class Context:
    tmp: Path
    quick: bool = False
    write: bool = True
    notes: list[str] = field(default_factory=list)  # extra lines for the footer (e.g. the quicker settings)
    touched: list[Path] = field(default_factory=list)  # files outside README.md that were rewritten

    def log(self, msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env.setdefault("AUGSTUDIO_SETTINGS_DIR", str(self.tmp / "settings"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, argv: list[str], timeout: float | None = None, **env) -> str:
        """Run a command (from the repository root), echo it, return its stdout; a failure raises."""
        self.log("$ " + " ".join(str(a) for a in argv))
        t = time.perf_counter()
        res = subprocess.run([str(a) for a in argv], cwd=ROOT, env=self.env(**env), capture_output=True, text=True,
                             timeout=timeout)
        self.log(f"  ... {time.perf_counter() - t:.0f} s, exit {res.returncode}")
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed with exit {res.returncode}:\n"
                               f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res.stdout

    def cli(self, *args, timeout: float | None = None, **env) -> str:
        """``augstudio ARGS`` in a subprocess (the command users type)."""
        return self.run([sys.executable, "-m", "augstudio", *args], timeout=timeout, **env)

    def script(self, rel: str, *args, timeout: float | None = None, **env) -> str:
        return self.run([sys.executable, str(ROOT / rel), *args], timeout=timeout, **env)

    def write_block(self, path: Path, name: str, text: str) -> None:
        """Rewrite the ``figure:NAME`` block of another document (e.g. docs/tta_example.md)."""
        if self.write:
            from .markers import replace_block

            replace_block(path, name, text)
            if path not in self.touched:
                self.touched.append(path)

    def copy(self, src: Path, dst: Path) -> None:
        if self.write:
            shutil.copyfile(src, dst)
            if dst not in self.touched:
                self.touched.append(dst)


# -- small helpers shared by the figures ----------------------------------------------------------------------
def md_table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", sep]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def med_range(values, fmt: str = "{:.0%}") -> str:
    """'median (min-max)' of a few runs, e.g. '62% (58-67%)'."""
    values = list(values)
    m = statistics.median(values)
    lo, hi = min(values), max(values)
    if lo == hi:
        return fmt.format(m)
    lo_s, hi_s = fmt.format(lo), fmt.format(hi)
    if lo_s.endswith("%") and hi_s.endswith("%"):
        lo_s = lo_s[:-1]
    return f"{fmt.format(m)} ({lo_s}-{hi_s})"


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def load_all() -> dict[str, Figure]:
    """Import every figure module (each registers its figures), in README order."""
    from . import (  # noqa: F401 (registration)
        evaluate,
        localisation,
        puzzlemix_energy,
        speed,
        training,
        tta,
    )
    return REGISTRY
