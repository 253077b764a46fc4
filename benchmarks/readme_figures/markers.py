"""Blocks between ``<!-- figure:NAME -->`` and ``<!-- /figure:NAME -->`` in markdown files.

The block keeps the indentation of its opening marker (a block inside a list item stays in the item); the
file is re-read just before it is written and only the text between the two markers changes, so edits
elsewhere in the file (by people working on it at the same time) are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _pattern(name: str) -> re.Pattern:
    n = re.escape(name)
    return re.compile(rf"^(?P<indent>[ \t]*)<!-- figure:{n} -->[ \t]*\n(?P<body>.*?)^[ \t]*<!-- /figure:{n} -->",
                      re.S | re.M)


def block_names(text: str) -> list[str]:
    return re.findall(r"<!-- figure:([\w.-]+) -->", text)


def read_block(text: str, name: str) -> str | None:
    m = _pattern(name).search(text)
    return None if m is None else m.group("body")


def replace_in_text(text: str, name: str, body: str) -> str:
    m = _pattern(name).search(text)
    if m is None:
        raise KeyError(f"no <!-- figure:{name} --> ... <!-- /figure:{name} --> block")
    indent = m.group("indent")
    lines = body.strip("\n").split("\n")
    new = "".join((indent + line if line.strip() else "") + "\n" for line in lines)
    start, end = m.span("body")
    return text[:start] + new + text[end:]


def replace_block(path, name: str, body: str) -> bool:
    """Rewrite one block of ``path`` in place (atomically); True when it changed."""
    path = Path(path)
    text = path.read_text()
    new = replace_in_text(text, name, body)
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.figures-tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True
