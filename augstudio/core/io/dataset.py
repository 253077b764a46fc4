"""Scan a dataset folder: torchvision ImageFolder layout (class = first-level folder, sorted) or a flat
folder of unlabelled images. Fast (no decoding; one directory walk), survives symlink loops, skips hidden
files, and lists problems (empty or unreadable files, broken links, loose files) with reasons.

Extensions: torchvision's IMG_EXTENSIONS plus .gif (Pillow reads it; the first frame is used).
Needs no torch, so the GUI can browse before torch has loaded.
"""

from __future__ import annotations

import os
import stat as _stat
from dataclasses import dataclass, field
from pathlib import Path

from augstudio.core.base.errors import DatasetError, ImageError
from augstudio.core.base.jobs import Progress

from .images import IMAGE_EXTENSIONS, load_pil, read_header


@dataclass(frozen=True)
class Item:
    path: str  # relative to the dataset root, with forward slashes: the item's stable key
    label: int  # class index, or -1 when unlabelled
    class_name: str | None


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    items: list[Item]
    problems: list[Problem] = field(default_factory=list)
    layout: str = "imagefolder"  # or "flat"

    def __len__(self) -> int:
        return len(self.items)

    def abspath(self, item: Item | str) -> Path:
        rel = item.path if isinstance(item, Item) else item
        return self.root / rel

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes}
        for it in self.items:
            if it.class_name is not None:
                out[it.class_name] += 1
        return out

    def by_class(self, name: str) -> list[Item]:
        return [it for it in self.items if it.class_name == name]


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _readable(st) -> bool:
    """Whether this process may read a file, from its stat (no second system call, unlike os.access)."""
    if _EUID == 0:
        return True
    mode = st.st_mode
    if st.st_uid == _EUID:
        return bool(mode & _stat.S_IRUSR)
    if st.st_gid in _GROUPS:
        return bool(mode & _stat.S_IRGRP)
    return bool(mode & _stat.S_IROTH)


_EUID = os.geteuid() if hasattr(os, "geteuid") else -1
_GROUPS = set(os.getgroups()) | {os.getegid()} if hasattr(os, "getgroups") else set()


def _walk(top: str, rel: str, visited: set, dirs: list, problems: list, check: bool, depth: int = 0) -> None:
    """Recursive scandir walk that follows directory symlinks once (loops are cut by inode).

    Appends ``(rel_dir, [file names])`` per folder to ``dirs`` (names sorted) and problems as found. With
    ``check`` each image file is stat-ed here (one call per file): empty and unreadable files are problems.
    """
    if depth > 64:
        problems.append(Problem(rel or ".", "folder nesting deeper than 64 levels; not scanned further"))
        return
    try:
        it = os.scandir(top)
    except PermissionError:
        problems.append(Problem(rel or ".", "folder not readable (permission denied)"))
        return
    except OSError as e:
        problems.append(Problem(rel or ".", f"folder cannot be listed: {e.strerror or e}"))
        return
    with it:
        entries = sorted(it, key=lambda e: e.name)
    names: list[str] = []
    subdirs = []
    prefix = f"{rel}/" if rel else ""
    for e in entries:
        name = e.name
        if name[0] == ".":
            continue
        try:
            is_dir = e.is_dir()  # follows symlinks; free (d_type) unless the entry is a link
        except OSError:
            is_dir = False
        if is_dir:
            subdirs.append(e)
            continue
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        try:
            is_file = e.is_file()
        except OSError:
            is_file = False
        if not is_file:
            r = prefix + name
            if e.is_symlink():
                try:
                    os.stat(e.path)
                    reason = "not a regular file"
                except OSError as ex:
                    reason = ("symbolic link loop (the link points back to itself); skipped"
                              if getattr(ex, "errno", None) == 40
                              else "broken symbolic link (its target does not exist); skipped")
            else:
                reason = "not a regular file"
            problems.append(Problem(r, reason))
            continue
        if check:
            try:
                st = e.stat()
                if st.st_size == 0:
                    problems.append(Problem(prefix + name, "empty file (0 bytes)"))
                elif not _readable(st):
                    problems.append(Problem(prefix + name, "file not readable (permission denied)"))
            except OSError as ex:
                problems.append(Problem(prefix + name, f"cannot stat: {ex.strerror or ex}"))
        names.append(name)
    if names:
        dirs.append((rel, names))
    for e in subdirs:
        r = prefix + e.name
        try:
            st = e.stat()
        except OSError as ex:
            problems.append(Problem(r, f"folder cannot be read: {ex.strerror or ex}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            problems.append(Problem(r, "symbolic link loop (folder already scanned); skipped"))
            continue
        visited.add(key)
        _walk(e.path, r, visited, dirs, problems, check, depth + 1)


def scan(root, check_files: bool = True) -> Dataset:
    """Scan ``root`` without decoding anything. With ``check_files`` every image file is stat-ed (one
    system call each) so that empty and unreadable files are listed as problems up front; they are still
    listed as items so the browser can show them with a warning mark — decoding them raises ImageError
    with the reason.

    In ImageFolder layout the classes and the order of the items are torchvision's: classes sorted, then
    items by folder path, then file name.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder; open the folder that holds the images")
    dirs: list[tuple[str, list[str]]] = []
    problems: list[Problem] = []
    try:
        st = root.stat()
    except OSError as e:
        raise DatasetError(f"{root}: cannot read folder: {e.strerror or e}") from None
    _walk(str(root), "", {(st.st_dev, st.st_ino)}, dirs, problems, check_files)

    nested = [(d, names) for d, names in dirs if d]
    loose = next((names for d, names in dirs if not d), [])
    if nested:
        layout = "imagefolder"
        # torchvision's ImageFolder order: class, then folder path (os.walk sorted), then file name
        nested.sort(key=lambda dn: (dn[0].split("/", 1)[0], dn[0]))
        classes = sorted({d.split("/", 1)[0] for d, _ in nested})
        # empty class folders (torchvision lists only folders with images; we report the empty ones)
        try:
            for e in sorted(os.scandir(root), key=lambda e: e.name):
                if not e.name.startswith(".") and e.is_dir() and e.name not in classes:
                    problems.append(Problem(e.name, "class folder has no images; ignored"))
        except OSError:
            pass
        index = {c: i for i, c in enumerate(classes)}
        items = []
        for d, names in nested:
            cls = d.split("/", 1)[0]
            label = index[cls]
            items.extend(Item(f"{d}/{n}", label, cls) for n in names)
        for f in loose:
            problems.append(Problem(f, "image outside any class folder; ignored in ImageFolder layout"))
    else:
        layout = "flat"
        classes = []
        items = [Item(f, -1, None) for f in loose]
    return Dataset(root, classes, items, problems, layout)


def require_images(ds: Dataset) -> Dataset:
    if not ds.items:
        raise DatasetError(f"{ds.root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in the folder "
                           "and its class sub-folders)")
    return ds


@dataclass
class CheckSummary:
    """What a header check over a dataset found: how many items are readable, and why the others are not."""

    checked: int = 0
    ok: int = 0
    bad: list[Problem] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.ok} of {self.checked} images readable, {len(self.bad)} skipped"


def check_job(ds: Dataset, cancel=None, decode: bool = False):
    """Job: read every item's header (or decode it fully with ``decode=True``); a bad file is reported
    in the summary and the check carries on. Yields Progress, returns a CheckSummary."""

    summary = CheckSummary()
    total = len(ds.items)
    for i, it in enumerate(ds.items):
        if cancel is not None:
            cancel.check(f"checked {i} of {total} images")
        summary.checked += 1
        try:
            if decode:
                load_pil(ds.abspath(it)).close()
            else:
                read_header(ds.abspath(it))
            summary.ok += 1
        except ImageError as e:
            summary.bad.append(Problem(it.path, e.cause))
        yield Progress(i + 1, total, it.path)
    return summary
