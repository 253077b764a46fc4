"""Read an exported mixed dataset (flat images + ``labels.csv``) back as a torch Dataset of
``(image tensor, soft label)``.

``labels.csv``: header ``file,<class 1>,<class 2>,...``; one row per image with its soft label vector.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath

import torch

from augstudio.core.base.errors import DatasetError

from .images import load_pil, read_image


class SoftLabelFolder(torch.utils.data.Dataset):
    """``SoftLabelFolder(path, transform=None)``: items are ``(image, soft_label)``.

    ``image`` is a float tensor ``C x H x W`` in 0..1 (or whatever ``transform`` makes of the PIL image
    when a transform is given); ``soft_label`` is a float tensor of length ``len(classes)``.
    """

    def __init__(self, path, transform=None):
        self.root = Path(path)
        self.transform = transform
        csv_path = self.root / "labels.csv"
        if not csv_path.is_file():
            raise DatasetError(f"{csv_path}: not found; a soft-label folder is made by `augstudio export` with a "
                               "recipe that has a 'batch:' stage (mixup, cutmix, puzzlemix, label_smoothing)")
        try:
            rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{csv_path}: cannot read: {e}") from None
        if not rows or len(rows[0]) < 2 or rows[0][0] != "file":
            raise DatasetError(f"{csv_path}: the header must be 'file,<class names...>'")
        self.classes = rows[0][1:]
        self.samples: list[tuple[str, torch.Tensor]] = []
        for n, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(self.classes) + 1:
                raise DatasetError(f"{csv_path}: line {n} has {len(row) - 1} label values, the header names "
                                   f"{len(self.classes)} classes")
            name = row[0]
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts:
                raise DatasetError(f"{csv_path}: line {n}: unsafe file name {name!r}")
            try:
                vec = torch.tensor([float(v) for v in row[1:]], dtype=torch.float32)
            except ValueError:
                raise DatasetError(f"{csv_path}: line {n}: label values must be numbers") from None
            self.samples.append((name, vec))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        name, vec = self.samples[i]
        path = self.root / name
        if self.transform is not None:
            return self.transform(load_pil(path).convert("RGB")), vec.clone()
        pic = read_image(path)
        return pic.pixels.float() / 255.0, vec.clone()
