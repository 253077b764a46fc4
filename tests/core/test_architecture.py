"""The architecture stays visible and enforced: no import cycles (function-local imports included), a
function-local import only to defer a heavy dependency and saying so, small modules. The layer contracts
themselves are import-linter's (``lint-imports``, run by ``make test``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "augstudio"
MAX_LINES = 520


def _import_graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("augstudio")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(_import_graph())
    assert cycles == [], f"import cycles (function-local imports count): {cycles}"


def test_the_cycle_finder_finds_a_cycle():
    """Control: a graph with a cycle is reported, so the test above can fail."""
    grimp = pytest.importorskip("grimp")
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.a")
    g.add_import(importer="p.c", imported="p.a")
    assert _cycles(g) == [["p.a", "p.b"]]


def _local_imports_without_reason(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    bad = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    tail = lines[sub.end_lineno - 1][sub.end_col_offset:]
                    if "# deferred:" not in tail:
                        bad.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    return bad


def test_function_local_imports_only_defer_heavy_dependencies_and_say_so():
    bad = sorted({b for p in PACKAGE.rglob("*.py") for b in _local_imports_without_reason(p)})
    assert bad == [], ("a function-local import must defer a heavy dependency and say which, e.g. "
                       f"`import torch  # deferred: torch`; found without a reason: {bad}")


def test_no_module_is_large():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    large = {k: v for k, v in sizes.items() if v > MAX_LINES}
    assert large == {}, f"modules over {MAX_LINES} lines (split them by responsibility): {large}"


def test_import_linter_contracts_are_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed in this environment")
    res = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout
