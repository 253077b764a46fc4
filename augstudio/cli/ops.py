"""augstudio ops [NAME]: list the ops and their parameters (from their declarations)."""

from __future__ import annotations

ORDER = 90


def add_parser(sub) -> str:
    p = sub.add_parser("ops", help="list the ops and their parameters")
    p.add_argument("name", nargs="?", help="show one op in detail")
    p.add_argument("--markdown", action="store_true", help="print the README's ops table")
    return "ops"


def run(args) -> int:
    from augstudio.core.workflows.docs import op_help, ops_table_markdown  # deferred: torch

    if args.markdown:
        print(ops_table_markdown())
    else:
        print(op_help(args.name))
    return 0
