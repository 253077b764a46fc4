"""The append-only JSON-lines journals that make long jobs resumable (export, batch export, distillation).

A job appends one line per finished item and flushes; a kill can cut only the last line short, which
``read_journal`` skips, so the item is simply redone on the next run.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_journal(path: Path, key: str = "source", require: tuple[str, ...] = ()) -> dict[str, dict]:
    """Records of a journal by ``rec[key]``; a later line for the same key wins. Missing file: empty."""
    done: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and key in rec and all(k in rec for k in require):
                done[rec[key]] = rec
    return done
