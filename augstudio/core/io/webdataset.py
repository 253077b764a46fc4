"""WebDataset tar shards, written deterministically.

A shard is a plain POSIX tar (ustar) of samples; a sample is the members that share a key, one per
extension (``<key>.png``, ``<key>.cls``, ``<key>.json``), and the ``webdataset`` package groups
consecutive members by key. The bytes of a shard depend only on its samples: members sorted by (key,
extension), every header with mtime 0, uid/gid 0, no user or group name, mode 0644. A shard is written
through a temporary name and renamed, like every other output, so a kill leaves no partial shard.

Keys hold no dot (``webdataset`` splits a member's name at the first dot of its base name): they are the
sample's number in the export, zero-padded so that the order of names is the order of the export.

This module needs only the standard library; the ``webdataset`` package is needed only to read shards
in a training loop.
"""

from __future__ import annotations

import io
import tarfile

from . import images

SHARD_PATTERN = "shard-{:06d}.tar"
KEY_DIGITS = 10


def shard_name(k: int) -> str:
    return SHARD_PATTERN.format(k)


def shard_urls(count: int) -> str:
    """The brace pattern ``webdataset.WebDataset`` expands to every shard of an export."""
    if count <= 1:
        return shard_name(0)
    return "shard-{" + f"{0:06d}..{count - 1:06d}" + "}.tar"


def sample_key(n: int) -> str:
    return f"{n:0{KEY_DIGITS}d}"


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def shard_bytes_to(f, samples) -> None:
    """Write the tar of ``samples`` (``[(key, {ext: bytes})]``) to the binary file ``f``."""
    members = sorted((key, ext, data) for key, parts in samples for ext, data in parts.items())
    names = [f"{k}.{e}" for k, e, _ in members]
    if len(set(names)) != len(names):
        raise ValueError("two members of a shard have the same name")
    with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, ext, data in members:
            if "." in key or "/" in key:
                raise ValueError(f"a WebDataset key must not hold '.' or '/': {key!r}")
            tar.addfile(_member(f"{key}.{ext}", len(data)), io.BytesIO(data))


def shard_bytes(samples) -> bytes:
    buf = io.BytesIO()
    shard_bytes_to(buf, samples)
    return buf.getvalue()


def write_shard(path, samples) -> None:
    """Write a shard atomically (temporary name in the same folder, then a rename), streaming to disk."""
    def stream(tmp):
        with open(tmp, "wb") as f:
            shard_bytes_to(f, samples)

    images.atomic_write_with(path, stream)


def read_shard(path) -> list[tuple[str, dict[str, bytes]]]:
    """The samples of a shard (a path or a binary file) in member order (``[(key, {ext: bytes})]``), without
    the webdataset package."""
    out: list[tuple[str, dict[str, bytes]]] = []
    opened = tarfile.open(fileobj=path, mode="r:") if hasattr(path, "read") else tarfile.open(path, mode="r:")
    with opened as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if not out or out[-1][0] != key:
                out.append((key, {}))
            out[-1][1][ext] = tar.extractfile(info).read()
    return out


__all__ = ["shard_name", "shard_urls", "sample_key", "shard_bytes", "write_shard", "read_shard", "SHARD_PATTERN"]
