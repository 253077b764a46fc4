"""Masks, boxes and keypoints drawn over a picture in an ``ImagePane`` view.

* ``overlay_data(targets, classes)``: canonical targets (``augstudio.core.base.targets``, CPU tensors) as
  plain numpy things to draw; no Qt, so the preview's worker makes them.
* ``lost_summary(records)``: what the records' ``targets_lost`` say (a box dropped, a keypoint that left the
  image), as a short line and the whole list.
* ``TargetSource``: the open dataset's targets per item, read once per opened folder (on the preview's worker).
* ``TargetOverlay(view)``: the pyqtgraph items on one view: the mask as a translucent colour per class
  (0, the background, transparent; the ignore value grey), each box as a rectangle with its class name, each
  visible keypoint as a dot. Lines, names and dots keep their screen size at any zoom. The targets are in
  the picture's pixel-edge frame, which is the view's frame (pixel ``(r, c)`` covers ``[c, c+1] x [r, r+1]``).
"""

from __future__ import annotations

import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from augstudio.core.base.errors import AugstudioError

KINDS = ("masks", "boxes", "keypoints")
PALETTE = [(255, 99, 71), (30, 144, 255), (50, 205, 50), (255, 215, 0), (218, 112, 214), (0, 206, 209),
           (255, 140, 0), (154, 205, 50), (255, 105, 180), (135, 206, 250)]
MASK_ALPHA = 110
IGNORE_RGBA = (150, 150, 150, 90)
KEYPOINT_RGB = (255, 255, 255)
BOX_WIDTH = 2


def class_color(label: int) -> tuple[int, int, int]:
    return PALETTE[int(label) % len(PALETTE)]


def class_name(label: int, classes) -> str:
    label = int(label)
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def mask_rgba(mask: np.ndarray, labels=None, ignore_index: int = 255) -> np.ndarray:
    """``H x W x 4`` uint8 tint of a class mask (``H x W``: colour per value, 0 transparent) or of instance
    masks (``M x H x W``, one per box: slice ``i`` in the colour of ``labels[i]``, later slices on top)."""
    h, w = mask.shape[-2:]
    out = np.zeros((h, w, 4), np.uint8)
    if mask.ndim == 2:
        values, inv = np.unique(mask, return_inverse=True)
        lut = np.zeros((len(values), 4), np.uint8)
        for k, v in enumerate(values):
            if v == ignore_index:
                lut[k] = IGNORE_RGBA
            elif v != 0:
                lut[k] = (*class_color(v), MASK_ALPHA)
        return lut[inv.reshape(h, w)]
    for i, m in enumerate(mask):
        label = labels[i] if labels is not None and len(labels) == len(mask) else i
        out[m != 0] = (*class_color(label), MASK_ALPHA)
        out[m == ignore_index] = IGNORE_RGBA
    return out


def overlay_data(targets: dict | None, classes=(), ignore_index: int = 255) -> dict | None:
    """What ``TargetOverlay.set`` draws for canonical ``targets``: ``mask`` (``H x W x 4`` uint8 or None),
    ``boxes`` (``[(x1, y1, x2, y2, name, rgb)]``) and ``keypoints`` (``K x 2`` float, the visible ones)."""
    if targets is None:
        return None
    labels = targets["box_labels"].numpy() if "box_labels" in targets else None
    mask = targets.get("mask")
    data: dict = {"mask": None if mask is None else mask_rgba(mask.numpy(), labels, ignore_index),
                  "boxes": [], "keypoints": np.zeros((0, 2))}
    if "boxes" in targets:
        boxes = targets["boxes"].tolist()
        for b, lab in zip(boxes, labels.tolist() if labels is not None else [0] * len(boxes)):
            data["boxes"].append((*b, class_name(lab, classes), class_color(lab)))
    if "keypoints" in targets:
        k = targets["keypoints"].numpy().astype(float)
        data["keypoints"] = k[targets["keypoint_visible"].numpy()] if "keypoint_visible" in targets else k
    return data


def lost_summary(records) -> tuple[str, str]:
    """("1 box dropped (visible 0.230 < min_visibility 0.3)", one line per lost target with its step), or
    ("", "") when nothing was lost."""
    boxes, points, lines = [], [], []
    for r in records or ():
        for e in r.get("targets_lost", ()):
            kind = "box" if "box" in e else "keypoint"
            (boxes if kind == "box" else points).append(e.get("reason", ""))
            lines.append(f"step {r['step']} ({r['op']}): {kind} {e.get(kind, e.get('index', '?'))}: "
                         f"{e.get('reason', '')}")
    parts = []
    for what, verb, reasons in (("box", "dropped", boxes), ("keypoint", "left the image", points)):
        if reasons:
            n = len(reasons)
            plural = ("boxes" if what == "box" else "keypoints") if n != 1 else what
            why = reasons[0] if what == "box" and reasons[0] else ""
            more = "; …" if what == "box" and len(set(reasons)) > 1 else ""
            parts.append(f"{n} {plural} {verb}" + (f" ({why}{more})" if why else ""))
    return " · ".join(parts), "\n".join(lines)


class TargetSource:
    """The open dataset's targets, read once per opened folder (on a worker: the first preview reads them)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ds = None
        self._data: dict | None = None

    def get(self, ds, key: str, size) -> dict | None:
        """None when the folder has no targets, else ``{"targets": canonical targets of item ``key`` (``{}``
        when it has none; None when they cannot be shown), "classes": names, "note": why not shown}``."""
        with self._lock:
            if self._ds is not ds:
                self._ds, self._data = ds, self._read(ds.root)
            data = self._data
        if data is None:
            return None
        if "error" in data:
            return {"targets": None, "classes": [], "note": data["error"]}
        out = {"targets": {}, "classes": data["classes"], "note": ""}
        it = data["items"].get(key)
        if it is not None and tuple(it.size) != tuple(size):
            out.update(targets=None, note=f"targets not shown: the annotations are for an image of "
                                           f"{it.size[1]} × {it.size[0]}, this one is {size[1]} × {size[0]}")
        elif it is not None:
            try:
                out["targets"] = it.targets
            except AugstudioError as e:
                out.update(targets=None, note=f"targets not shown: {e}")
        return out

    @staticmethod
    def _read(root) -> dict | None:
        from augstudio.core.io.targets import detect_format, read_targets  # deferred: torch

        try:
            if detect_format(root) is None:
                return None
            td = read_targets(root)
        except (AugstudioError, OSError) as e:
            return {"error": f"targets not shown: {e}"}
        items = {}
        for it in td.items:
            try:
                items[td.abspath(it).relative_to(root).as_posix()] = it
            except ValueError:
                items[it.image] = it
        return {"items": items, "classes": list(td.classes)}


class TargetOverlay:
    """The target items on one ``pg.ViewBox`` (above its picture; they never change its auto-range)."""

    def __init__(self, view: pg.ViewBox):
        self.view = view
        self.kinds = set(KINDS)
        self.mask = pg.ImageItem(axisOrder="row-major")
        self.mask.setZValue(10)
        self.points = pg.ScatterPlotItem(size=7, pxMode=True, pen=pg.mkPen(0, 0, 0, 220, width=1.5),
                                         brush=pg.mkBrush(*KEYPOINT_RGB))
        self.points.setZValue(30)
        view.addItem(self.mask, ignoreBounds=True)
        view.addItem(self.points, ignoreBounds=True)
        self.rects: list[QGraphicsRectItem] = []
        self.names: list[pg.TextItem] = []
        self.data: dict | None = None

    def set(self, data: dict | None) -> None:
        """Draw ``overlay_data``'s result (None: nothing)."""
        for it in self.rects + self.names:
            self.view.removeItem(it)
        self.rects, self.names = [], []
        self.data = data
        if data is None or data["mask"] is None:
            self.mask.clear()
        else:
            self.mask.setImage(data["mask"], autoLevels=False, levels=(0, 255))
        for x1, y1, x2, y2, name, rgb in (data or {}).get("boxes", ()):
            rect = QGraphicsRectItem(x1, y1, x2 - x1, y2 - y1)
            pen = QPen(QColor(*rgb))
            pen.setCosmetic(True)  # the same width on screen at any zoom
            pen.setWidth(BOX_WIDTH)
            rect.setPen(pen)
            rect.setZValue(20)
            text = pg.TextItem(name, color=(20, 20, 20), fill=pg.mkBrush(*rgb, 210), anchor=(0, 0))
            text.setPos(x1, y1)
            text.setZValue(21)
            self.view.addItem(rect, ignoreBounds=True)
            self.view.addItem(text, ignoreBounds=True)
            self.rects.append(rect)
            self.names.append(text)
        k = (data or {}).get("keypoints")
        self.points.setData(pos=np.zeros((0, 2)) if k is None else k)
        self._apply()

    def set_kinds(self, kinds) -> None:
        """Which of ``KINDS`` show."""
        self.kinds = set(kinds)
        self._apply()

    def _apply(self) -> None:
        self.mask.setVisible("masks" in self.kinds)
        for it in self.rects + self.names:
            it.setVisible("boxes" in self.kinds)
        self.points.setVisible("keypoints" in self.kinds)
