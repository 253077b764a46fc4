"""Text made from the op declarations: CLI help and the README's ops table."""

from __future__ import annotations

from pathlib import Path

from augstudio.core.base.errors import RecipeError
from augstudio.core.ops import all_batch_ops, all_ops, get_batch_op, get_op

FAMILY_ORDER = ("geometry", "color", "noise", "erase", "container", "style", "policy", "batch", "misc")


def _default(p) -> str:
    v = p.default
    if p.kind == "steps":
        return "[]"
    return "—" if v is None else str(v).replace("'", "")


def ops_table_markdown() -> str:
    rows = ["| op | family | what it does | parameters (default; range) | categorical images |",
            "|---|---|---|---|---|"]
    ops = list(all_ops().values()) + list(all_batch_ops().values())
    ops.sort(key=lambda c: (FAMILY_ORDER.index(c.family) if c.family in FAMILY_ORDER else 99, c.name))
    for cls in ops:
        params = "<br>".join(
            f"`{p.name}` ({_default(p)}{'; ' + p.describe_range() if p.describe_range() else ''})"
            for p in cls.params) or "—"
        cat = {"geometric": "yes (nearest)", "refuse": "refused", "custom": "yes (on categories)"}.get(
            cls.categorical, cls.categorical)
        rows.append(f"| `{cls.name}` | {cls.family} | {cls.summary} | {params} | {cat} |")
    return "\n".join(rows)


def op_help(name: str | None = None) -> str:
    if name:
        try:
            cls = get_op(name)
        except RecipeError:
            cls = get_batch_op(name)
        lines = [f"{cls.name} ({cls.family}): {cls.summary}", "parameters:"]
        for p in cls.params:
            rng = p.describe_range()
            lines.append(f"  {p.name:<16} {p.kind:<9} default {_default(p):<14} {rng:<16} {p.help}")
        lines.append(f"  {'p':<16} {'float':<9} default {'1.0':<14} {'0 .. 1':<16} probability of applying the step")
        return "\n".join(lines)
    out = []
    ops = list(all_ops().values()) + list(all_batch_ops().values())
    for fam in FAMILY_ORDER:
        group = sorted((c for c in ops if c.family == fam), key=lambda c: c.name)
        if group:
            out.append(f"{fam}:")
            out.extend(f"  {c.name:<22} {c.summary}" for c in group)
    return "\n".join(out)


def update_readme(path) -> bool:
    """Rewrite the ops table between the README's markers; True when it changed."""
    path = Path(path)
    text = path.read_text()
    start, end = "<!-- ops-table:start -->", "<!-- ops-table:end -->"
    i, j = text.index(start) + len(start), text.index(end)
    new = text[:i] + "\n" + ops_table_markdown() + "\n" + text[j:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if "--update-readme" in sys.argv:
        readme = Path(__file__).resolve().parents[3] / "README.md"
        print("updated" if update_readme(readme) else "already current", readme)
    else:
        print(ops_table_markdown())
