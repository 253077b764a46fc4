"""The README's ops table, made from the op declarations (``ops.catalogue``), and the shipped catalogue
kept equal to them: ``python -m augstudio.core.workflows.docs --update-readme`` rewrites both."""

from __future__ import annotations

import sys
from pathlib import Path

from augstudio.core.ops import catalogue


def ops_table_markdown() -> str:
    return catalogue.table_markdown(catalogue.build())


def op_help(name: str | None = None) -> str:
    return catalogue.help_text(catalogue.build(), name)


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
    if "--update-readme" in sys.argv:
        readme = Path(__file__).resolve().parents[3] / "README.md"
        print("updated" if update_readme(readme) else "already current", readme)
        print("catalogue updated" if catalogue.write() else "catalogue already current", catalogue.FILE)
    else:
        print(ops_table_markdown())
