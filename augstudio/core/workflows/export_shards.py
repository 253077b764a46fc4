"""``--format webdataset``: the export written as WebDataset tar shards instead of a folder of images.

A shard is the unit of work: shard ``k`` holds the samples of the source items ``[k*m, (k+1)*m)`` in scan
order (``m = max(1, shard_size // copies)``), so which sample lands in which shard depends only on the
dataset, ``--copies`` and ``--shard-size``. A worker makes every output of its items with the same
``ItemWorker`` as a folder export (into a private temporary folder on its own disk), then packs them into
the shard (``io.webdataset``: fixed member order and tar headers) and writes it atomically into the output
folder. The image bytes inside a shard are those of a folder export with the same recipe, seed and image
format.

Each sample is ``<key>.<ext>`` (the image), ``<key>.cls`` (the class index, as text, when the dataset has
classes) and ``<key>.json`` (the sample's manifest record, which also names the shard and the key, and for
a batch stage holds the soft ``label``). ``key`` is the sample's number ``item * copies + copy``, so keys
never change when an image is bad and skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from augstudio.core.io.outputs import os_error_message, safe_rel
from augstudio.core.io.webdataset import sample_key, shard_name, write_shard

from .export_items import ItemWorker

TMP_PREFIX = "augstudio-shard-"
DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class ShardTask:
    name: str  # shard-000012.tar
    out_root: str
    items: tuple  # ItemTask per source item of the shard


def items_per_shard(shard_size: int, copies: int) -> int:
    return max(1, shard_size // copies)


def plan_shards(n_items: int, per_shard: int) -> list[tuple[str, range]]:
    """(shard name, item indices) for every shard of a dataset of ``n_items`` items."""
    return [(shard_name(k), range(i0, min(i0 + per_shard, n_items)))
            for k, i0 in enumerate(range(0, n_items, per_shard))]


def record_for_sample(rec: dict, shard: str, key: str) -> dict:
    return {**rec, "shard": shard, "key": key}


def _stale(name: str) -> bool:
    """A temporary folder left by a worker process that no longer exists (killed mid-shard)."""
    try:
        pid = int(name[len(TMP_PREFIX):].split("-")[0])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def clean_stale_temp(tmp_root: str | None = None) -> None:
    root = Path(tmp_root or tempfile.gettempdir())
    try:
        names = [p.name for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]
    except OSError:
        return
    for name in names:
        if _stale(name):
            shutil.rmtree(root / name, ignore_errors=True)


class ShardWorker:
    """Turns one ``ShardTask`` into a written shard and the manifest records of its samples."""

    def __init__(self, item_args: tuple, copies: int, classes: tuple):
        self.items = ItemWorker(*item_args)
        self.copies = copies
        self.class_index = {c: i for i, c in enumerate(classes)}
        clean_stale_temp()

    def process(self, shard: ShardTask) -> dict:
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        try:
            return self._process(shard, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _process(self, shard: ShardTask, tmp: str) -> dict:
        results, samples = [], []
        for task in shard.items:
            res = self.items.process(replace(task, out_root=tmp))
            if "fatal" in res:
                return {"shard": shard.name, "fatal": res["fatal"]}
            if "records" in res:
                recs = []
                for rec in res["records"]:
                    key = sample_key(task.index * self.copies + rec["copy"])
                    rec = record_for_sample(rec, shard.name, key)
                    path = Path(tmp) / safe_rel(rec["output"])
                    parts = {PurePosixPath(rec["output"]).suffix.lstrip("."): path.read_bytes(),
                             "json": json.dumps(rec, separators=(",", ":"), sort_keys=True).encode()}
                    if rec.get("class") in self.class_index:
                        parts["cls"] = str(self.class_index[rec["class"]]).encode()
                    samples.append((key, parts))
                    recs.append(rec)
                res = {**res, "records": recs}
            results.append(res)
        try:
            write_shard(Path(shard.out_root) / shard.name, samples)
        except OSError as e:
            return {"shard": shard.name, "fatal": os_error_message(e, shard.out_root)}
        return {"shard": shard.name, "items": results}


__all__ = ["ShardTask", "ShardWorker", "items_per_shard", "plan_shards", "DEFAULT_SHARD_SIZE", "TMP_PREFIX"]
