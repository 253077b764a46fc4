"""augstudio ops [NAME]: list the ops and their parameters (from their declarations, via the shipped
catalogue: no torch, so it answers at once)."""

from __future__ import annotations

from augstudio.core.ops import catalogue

ORDER = 90


def add_parser(sub) -> str:
    p = sub.add_parser("ops", help="list the ops and their parameters")
    p.add_argument("name", nargs="?", help="show one op in detail")
    p.add_argument("--markdown", action="store_true", help="print the README's ops table")
    return "ops"


def run(args) -> int:
    entries = catalogue.load()
    print(catalogue.table_markdown(entries) if args.markdown else catalogue.help_text(entries, args.name))
    return 0
