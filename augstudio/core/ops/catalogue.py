"""The op catalogue: every op's declaration (name, family, summary, parameters) as plain data.

``build()`` reads the declarations (importing the op families, hence torch); ``catalogue.json`` beside this
file holds the same data, so ``augstudio ops`` and the CLI's help answer in a blink without torch (a test keeps
the file equal to the declarations). The README's ops table and ``augstudio ops [NAME]`` are made here.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from augstudio.core.base.errors import RecipeError

from .base import BatchOp

FILE = Path(__file__).with_name("catalogue.json")
FAMILY_ORDER = ("geometry", "color", "noise", "erase", "container", "style", "policy", "output", "batch", "misc")


def _default(p) -> str:
    if p.kind == "steps":
        return "[]"
    return "—" if p.default is None else str(p.default).replace("'", "")


def build() -> list[dict]:
    """The catalogue from the declarations themselves (imports every op family)."""
    from .registry import all_batch_ops, all_ops  # deferred: the families import torch
    from .target_effects import target_effect  # deferred: as above

    ops = list(all_ops().values()) + list(all_batch_ops().values())
    ops.sort(key=lambda c: (FAMILY_ORDER.index(c.family) if c.family in FAMILY_ORDER else 99, c.name))
    return [{"name": c.name, "family": c.family, "summary": c.summary, "categorical": c.categorical,
             "batch": issubclass(c, BatchOp), "targets": target_effect(c),
             "params": [{"name": p.name, "kind": p.kind, "default": _default(p), "range": p.describe_range(),
                         "help": p.help} for p in c.params]} for c in ops]


def load() -> list[dict]:
    """The catalogue as shipped (no torch)."""
    return json.loads(FILE.read_text(encoding="utf-8"))


def write(entries: list[dict] | None = None) -> bool:
    """Rewrite catalogue.json from the declarations; True when it changed."""
    text = json.dumps(entries if entries is not None else build(), indent=1, ensure_ascii=False) + "\n"
    if FILE.exists() and FILE.read_text(encoding="utf-8") == text:
        return False
    FILE.write_text(text, encoding="utf-8")
    return True


# what each target effect (ops.target_effects) means, in the table and in `augstudio ops NAME`
TARGETS_TEXT = {"geometric": "moved", "erase": "erased", "nested": "by its steps", "policy": "by its sub-ops",
                "keep": "kept", "refuse": "refused"}
TARGETS_LONG = {
    "geometric": "moved with the image (masks nearest, boxes enclosing their moved corners, keypoints exactly)",
    "erase": "erased mask pixels become the recipe's ignore_index; fully erased boxes dropped if asked",
    "nested": "through each nested step that ran", "policy": "moved by the geometric sub-ops it drew",
    "keep": "unchanged", "refuse": "refused (the result blends differently moved images)"}


def table_markdown(entries: list[dict]) -> str:
    rows = ["| op | family | what it does | parameters (default; range) | categorical images | masks, boxes, keypoints |",
            "|---|---|---|---|---|---|"]
    for e in entries:
        params = "<br>".join(f"`{p['name']}` ({p['default']}{'; ' + p['range'] if p['range'] else ''})"
                             for p in e["params"]) or "—"
        cat = {"geometric": "yes (nearest)", "refuse": "refused", "custom": "yes (on categories)"}.get(
            e["categorical"], e["categorical"])
        rows.append(f"| `{e['name']}` | {e['family']} | {e['summary']} | {params} | {cat} | "
                    f"{TARGETS_TEXT.get(e.get('targets'), '—')} |")
    return "\n".join(rows)


def _one_help(e: dict) -> str:
    where = "batch op (under 'batch:')" if e["batch"] else "per-image op (under 'steps:')"
    lines = [f"{e['name']} ({e['family']}, {where}): {e['summary']}", "parameters:"]
    for p in e["params"]:
        lines.append(f"  {p['name']:<16} {p['kind']:<9} default {p['default']:<14} {p['range']:<16} {p['help']}")
    lines.append(f"  {'p':<16} {'float':<9} default {'1.0':<14} {'0 .. 1':<16} probability of applying the step")
    if e.get("targets"):
        lines.append(f"masks, boxes, keypoints: {TARGETS_LONG[e['targets']]}")
    return "\n".join(lines)


def help_text(entries: list[dict], name: str | None = None) -> str:
    """``augstudio ops``: every op by family; ``augstudio ops NAME``: one op's parameters. An unknown name is a
    RecipeError naming the closest ops (per-image and batch alike)."""
    if name:
        found = [e for e in entries if e["name"] == name]  # one_of is a per-image and a batch op
        if not found:
            names = sorted({e["name"] for e in entries})
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            raise RecipeError(f"unknown op {name!r}.{hint} Run `augstudio ops` for the full list.")
        return "\n\n".join(_one_help(e) for e in found)
    out = []
    for fam in FAMILY_ORDER:
        group = sorted((e for e in entries if e["family"] == fam), key=lambda e: e["name"])
        if group:
            out.append(f"{fam}:")
            out.extend(f"  {e['name']:<22} {e['summary']}" for e in group)
    return "\n".join(out)


__all__ = ["build", "load", "write", "table_markdown", "help_text", "FAMILY_ORDER"]
