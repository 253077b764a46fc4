"""Output folders of long jobs (export, distillation): never inside the source, writable, paths that cannot
escape, a fingerprint that allows a resume only into a folder made with the same settings, and an
append-only resume journal. The messages say what to do."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath

from augstudio.core.base.errors import OutputError, WriteError

from . import images


def is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_output_folder(src: Path, out: Path, what: str = "source folder") -> Path:
    """Resolve ``out`` (following symlinks) and refuse places that would touch the source (named ``what``
    in the message: export's source folder, distillation's unlabelled folder)."""
    src_r = Path(src).resolve()
    out_r = Path(out).resolve()
    if out_r == src_r or is_within(out_r, src_r):
        raise OutputError(f"output folder {out} is inside the {what} {src}: augstudio never writes into "
                          "the source dataset. Choose an output folder outside it.")
    if is_within(src_r, out_r):
        raise OutputError(f"output folder {out} contains the {what} {src}; choose a separate, empty or "
                          "new folder so the source can never be overwritten.")
    return out_r


def is_plain_file(p: Path) -> bool:
    """A finished output: a regular file, not a link someone put in its place."""
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def safe_rel(rel: str) -> str:
    """Refuse relative output paths that could leave the output folder."""
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\\" in rel or "\x00" in rel:
        raise OutputError(f"refusing unsafe output path {rel!r} (it could escape the output folder)")
    return rel


def os_error_message(e: OSError, out_root) -> str:
    if e.errno == errno.ENOSPC:
        return (f"disk full while writing into {out_root}: free some space and run the same command again; "
                "finished images are kept and the export resumes")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"cannot write into {out_root}: {e.strerror}. Choose a writable output folder."
    return f"cannot write into {out_root}: {e.strerror or e}"


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".augstudio-write-test.{os.getpid()}.tmp"
        images.write_file(probe, b"")  # the same write path as the outputs
        probe.unlink()
    except OSError as e:
        raise OutputError(os_error_message(e, out)) from None  # a bad choice of folder: exit code 2


def claim_output_folder(out: Path, state_name: str, fingerprint: dict, what: str = "export") -> None:
    """Write the job's fingerprint (what decides its bytes) into ``out/state_name``, or check it against
    the one already there: a resume is allowed only into a folder made with the same settings."""
    path = out / state_name
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == fingerprint:
            return
        changed = sorted(k for k in fingerprint if not isinstance(old, dict) or old.get(k) != fingerprint[k])
        article = "an" if what[:1] in "aeiou" else "a"
        raise OutputError(f"output folder {out} holds {article} {what} made with a different "
                          f"{', '.join(changed) or 'setup'}; resuming into it would mix two {what}s. Choose a "
                          "new output folder, or delete this one to start again.")
    try:
        images.atomic_write_bytes(path, (json.dumps(fingerprint, sort_keys=True, indent=1) + "\n").encode("utf-8"))
    except OSError as e:
        raise OutputError(os_error_message(e, out)) from None


def open_journal(path: Path):
    """Open a resume journal for appending; a line cut short by a kill is ended first."""
    try:
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                with open(path, "ab") as f:
                    f.write(b"\n")
        return open(path, "a", encoding="utf-8")
    except OSError as e:
        raise WriteError(os_error_message(e, path.parent)) from None


__all__ = ["is_within", "check_output_folder", "is_plain_file", "safe_rel", "os_error_message", "check_writable",
           "claim_output_folder", "open_journal"]
