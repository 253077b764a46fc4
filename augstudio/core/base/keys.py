"""Item keys: how the seed path names an item (no torch here: recipes and the GUI use it before torch loads)."""

from __future__ import annotations

import os


def item_key(item, root=None):
    """The canonical key of an item: its path relative to the dataset root with forward slashes, whatever
    way it was written (``./cat/1.png``, ``cat\\1.png``, ``Path(...)``, or an absolute path under ``root``),
    so every spelling gives the export's pixels; integers stay integers (an index, as ``0`` and ``"0"``
    already meant the same)."""
    if type(item) is int:  # an index: the common case, without the os.PathLike check below
        return item
    if isinstance(item, bool) or not isinstance(item, (str, os.PathLike)):
        return item
    text = os.fspath(item)
    if root is not None and os.path.isabs(text):
        try:
            text = os.path.relpath(text, os.fspath(root))
        except ValueError:  # another drive (Windows)
            pass
    absolute = text.startswith(("/", "\\"))
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    return ("/" if absolute else "") + "/".join(parts)
