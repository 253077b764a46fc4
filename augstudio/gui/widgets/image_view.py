"""Image views shared by the panels.

* ``ImagePane``: pyqtgraph views in a grid with shared zoom / pan (HWC uint8 arrays, row-major), for the
  preview and the style panel's live result; fit / 1:1 zoom, the pixel under the cursor (``hovered``) and
  a click on a view (``clicked``); masks, boxes and keypoints over a view (``set_targets``, drawn by
  ``target_overlay``) and a short note pinned to a view's top-left corner (``set_badge``).
* ``ImageLabel``: a picture (anything ``to_qimage`` takes, or a QImage built on a worker) scaled to fit,
  kept fitted when the label is resized; for the saliency, mix and TTA views.
* ``TileGrid``: captioned ``ImageLabel``s that re-flow their columns to be as large as the room allows
  (the Mix panel's views).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetrics, QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from augstudio.gui.qt.images import to_qimage
from augstudio.gui.widgets.target_overlay import KINDS, TargetOverlay

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

BG = "#1e1f22"
BADGE_STYLE = {"warn": "background: rgba(150, 80, 0, 225); color: #fff3e0;",
               "note": "background: rgba(55, 60, 70, 225); color: #e6e8ec;"}


class ImagePane(pg.GraphicsLayoutWidget):
    """Views in a grid; all share zoom/pan with the first. ``hovered(text)`` describes the pixel under the
    cursor ("" when it leaves the pictures); ``clicked(i)`` a click on view ``i``."""

    hovered = Signal(str)
    clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(BG)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.views: list[pg.ViewBox] = []
        self.items: list[pg.ImageItem] = []
        self.labels: list[pg.LabelItem] = []
        self.arrays: list[np.ndarray | None] = []
        self.overlays: dict[int, TargetOverlay] = {}  # made on first use: most panes never show targets
        self.overlay_kinds = set(KINDS)
        self.badges: dict[int, QLabel] = {}
        self.scene().sigMouseMoved.connect(self._moved)
        self.scene().sigMouseClicked.connect(self._clicked)

    def set_layout(self, titles: list[str], cols: int) -> None:
        self.clear()
        for lab in self.badges.values():
            lab.deleteLater()
        self.overlays, self.badges = {}, {}
        self.views, self.items, self.labels = [], [], []
        self.arrays = [None] * len(titles)
        self.linked = True
        self.cols = cols
        for c in range(cols):
            self.ci.layout.setColumnStretchFactor(c, 1)  # equal columns, whatever the titles' lengths
        for i, t in enumerate(titles):
            r, c = divmod(i, cols)
            lab = self.addLabel(t, row=2 * r, col=c, color="#c8ccd4", size="9pt")
            lab.setSizePolicy(pg.QtWidgets.QSizePolicy.Policy.Ignored, pg.QtWidgets.QSizePolicy.Policy.Preferred)
            vb = self.addViewBox(row=2 * r + 1, col=c, lockAspect=True, invertY=True, enableMenu=False)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            vb.sigResized.connect(lambda _vb, i=i: self._place_badge(i))
            if self.views:
                vb.setXLink(self.views[0])
                vb.setYLink(self.views[0])
            self.views.append(vb)
            self.items.append(img)
            self.labels.append(lab)

    def _fit_title(self, title: str) -> str:
        """``title`` cut with an ellipsis to its column's width (the whole title is the label's tooltip)."""
        font = QFont()
        font.setPointSizeF(9)
        width = max(40, self.width() // max(1, getattr(self, "cols", 1)) - 16)
        return QFontMetrics(font).elidedText(title, Qt.TextElideMode.ElideRight, width)

    def show(self, i: int, a: np.ndarray, title: str | None = None) -> None:
        self.items[i].setImage(a, autoLevels=False, levels=(0, 255))
        self.arrays[i] = a
        if title is not None:
            lab = self.labels[i]
            lab.setText(self._fit_title(title))
            lab.setMinimumWidth(0)  # a LabelItem widens to its text: long titles pushed columns off screen
            lab.setToolTip(title)

    def set_targets(self, i: int, data: dict | None) -> None:
        """Draw ``target_overlay.overlay_data``'s result over view ``i`` (None: no targets)."""
        if data is None and i not in self.overlays:
            return
        if i not in self.overlays:
            self.overlays[i] = TargetOverlay(self.views[i])
            self.overlays[i].set_kinds(self.overlay_kinds)
        self.overlays[i].set(data)

    def set_overlay_kinds(self, kinds) -> None:
        """Which target kinds (``target_overlay.KINDS``) every view shows."""
        self.overlay_kinds = set(kinds)
        for ov in self.overlays.values():
            ov.set_kinds(self.overlay_kinds)

    def set_badge(self, i: int, text: str, tooltip: str = "", kind: str = "warn") -> None:
        """A short note over view ``i``'s top-left corner ("" hides it); ``kind``: "warn" or "note"."""
        lab = self.badges.get(i)
        if not text:
            if lab is not None:
                lab.hide()
            return
        if lab is None:
            lab = self.badges[i] = QLabel(self.viewport())
            lab.setObjectName("targetsBadge")
            lab.setWordWrap(True)
        lab.setStyleSheet(BADGE_STYLE[kind] + " border-radius: 3px; padding: 2px 5px;")
        lab.setText(text)
        lab.setToolTip(tooltip)
        self._place_badge(i)
        lab.show()

    def _place_badge(self, i: int) -> None:
        lab = self.badges.get(i)
        if lab is None or i >= len(self.views):
            return
        r = self.mapFromScene(self.views[i].sceneBoundingRect()).boundingRect()
        want = lab.fontMetrics().horizontalAdvance(lab.text()) + 16  # one line when the view has the room
        lab.setFixedWidth(max(60, min(want, r.width() - 8)))
        lab.adjustSize()
        lab.move(r.left() + 4, r.top() + 4)

    def set_linked(self, on: bool) -> None:
        """Share zoom / pan across the views (same-size pictures), or let each view zoom on its own (a
        2000-pixel photo beside its 96-pixel crop)."""
        for vb in self.views[1:]:
            vb.setXLink(self.views[0] if on else None)
            vb.setYLink(self.views[0] if on else None)
        self.linked = on

    def fit_each(self) -> None:
        """Fit every view to its own picture (unlinked views)."""
        for vb, a in zip(self.views, self.arrays):
            if a is not None:
                vb.setRange(xRange=(0, a.shape[1]), yRange=(0, a.shape[0]), padding=0.02)

    def clear_images(self) -> None:
        """Empty every view and title (nothing stale stays above a message)."""
        for i, (item, lab) in enumerate(zip(self.items, self.labels)):
            item.clear()
            lab.setText("")
            self.arrays[i] = None
            self.set_targets(i, None)
            self.set_badge(i, "")

    def fit(self, h: int | None = None, w: int | None = None) -> None:
        """Zoom so that an ``h`` x ``w`` picture (default: the largest shown) fits every view whole. The
        views share one range, so the range is chosen for the view with the least room."""
        if not self.views:
            return
        if not getattr(self, "linked", True):
            self.fit_each()
            return
        if h is None or w is None:
            shapes = [a.shape[:2] for a in self.arrays if a is not None]
            if not shapes:
                return
            h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
        pad = 0.02
        rw, rh = w * (1 + 2 * pad), h * (1 + 2 * pad)
        # the view with the smallest pixels-per-unit decides: with locked aspect, fit both sides in it
        sizes = [(vb.width(), vb.height()) for vb in self.views if vb.width() > 4 and vb.height() > 4]
        vb0 = self.views[0]
        if not sizes:
            vb0.setRange(xRange=(0, w), yRange=(0, h), padding=pad)
            return
        scale = min(min(vw / rw, vh / rh) for vw, vh in sizes)  # pixels per image pixel
        w0, h0 = max(vb0.width(), 1), max(vb0.height(), 1)
        cx, cy = w / 2, h / 2
        vb0.setRange(xRange=(cx - w0 / scale / 2, cx + w0 / scale / 2),
                     yRange=(cy - h0 / scale / 2, cy + h0 / scale / 2), padding=0)

    def actual_size(self) -> None:
        """1:1: one picture pixel per screen pixel, centred on what is shown now."""
        for vb in (self.views if not getattr(self, "linked", True) else self.views[:1]):
            (x0, x1), (y0, y1) = vb.viewRange()
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            w, h = vb.width(), vb.height()
            vb.setRange(xRange=(cx - w / 2, cx + w / 2), yRange=(cy - h / 2, cy + h / 2), padding=0)

    def _view_at(self, pos) -> int:
        for i, vb in enumerate(self.views):
            if vb.sceneBoundingRect().contains(pos):
                return i
        return -1

    def _moved(self, pos) -> None:
        i = self._view_at(pos)
        a = self.arrays[i] if 0 <= i < len(self.arrays) else None
        if a is None:
            self.hovered.emit("")
            return
        p = self.views[i].mapSceneToView(pos)
        x, y = int(np.floor(p.x())), int(np.floor(p.y()))
        if not (0 <= y < a.shape[0] and 0 <= x < a.shape[1]):
            self.hovered.emit("")
            return
        v = a[y, x]
        value = " ".join(str(int(c)) for c in np.atleast_1d(v))
        kind = {1: "gray", 3: "RGB", 4: "RGBA"}.get(np.atleast_1d(v).size, "")
        self.hovered.emit(f"x {x}, y {y}: {kind} {value}")

    def _clicked(self, ev) -> None:
        i = self._view_at(ev.scenePos())
        if i >= 0 and ev.button() == Qt.MouseButton.LeftButton and not ev.double():
            self.clicked.emit(i)


def fit_later(pane: ImagePane, h: int, w: int) -> None:
    """``pane.fit(h, w)`` once the event loop runs again (a page just shown has its size by then). The pane is
    the timer's context, so Qt drops the call if the pane is deleted first (a window closed, a test torn
    down): a plain zero-timer would call into its deleted views."""
    QTimer.singleShot(0, pane, lambda: pane.fit(h, w))


class ImageLabel(QLabel):
    def __init__(self, text: str = "", parent=None):
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._pixmap: QPixmap | None = None
        self.hint = QSize(128, 128)

    def sizeHint(self) -> QSize:  # noqa: N802 - not the pixmap's size: the picture fits whatever it is given
        return self.hint

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(16, 16)

    def set_image(self, image) -> None:
        """Show ``image`` (a QImage, or anything ``to_qimage`` takes); None clears the view to a dash."""
        if image is None:
            self._pixmap = None
            self.clear()
            self.setText("—")
            return
        self._pixmap = QPixmap.fromImage(image if isinstance(image, QImage) else to_qimage(image))
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        size = self.contentsRect().size()
        pm = self._pixmap
        if size.width() > 8 and size.height() > 8:
            pm = pm.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        self.setPixmap(pm)

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._fit()


class TileGrid(QWidget):
    """Captioned pictures (``ImageLabel``s) that share the room they get: the number of columns is chosen
    on every resize so that the tiles are as large as possible (no empty band below small fixed tiles, and
    no minimum width beyond one small tile)."""

    MIN_TILE = 64

    def __init__(self, tiles: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.views: dict[str, ImageLabel] = {}
        self.captions: dict[str, QLabel] = {}
        self._boxes: list[QWidget] = []
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        for key, title in tiles:
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.setSpacing(2)
            pic = ImageLabel("—")
            pic.setMinimumSize(self.MIN_TILE, self.MIN_TILE)
            pic.hint = QSize(self.MIN_TILE, self.MIN_TILE)  # small preferred size: the tiles grow to the room
            pic.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            pic.setStyleSheet("background: #222;")
            cap = QLabel(title)
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cap.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            lay.addWidget(pic, 1)
            lay.addWidget(cap)
            self.views[key] = pic
            self.captions[key] = cap
            self._boxes.append(box)
        self.cols = 0
        self._arrange(4)

    def columns_for(self, width: int, height: int) -> int:
        """The column count that gives the largest square tiles in ``width`` x ``height``."""
        n = len(self._boxes)
        best, best_side = 1, -1.0
        for cols in range(1, n + 1):
            rows = -(-n // cols)
            side = min(width / cols, height / rows - 20)  # 20: the caption
            if side > best_side + 0.5:
                best, best_side = cols, side
        return best

    def _arrange(self, cols: int) -> None:
        if cols == self.cols:
            return
        self.cols = cols
        for box in self._boxes:
            self.grid.removeWidget(box)
        for i, box in enumerate(self._boxes):
            self.grid.addWidget(box, i // cols, i % cols)
        for c in range(len(self._boxes)):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)
        rows = -(-len(self._boxes) // cols)
        for r in range(len(self._boxes)):
            self.grid.setRowStretch(r, 1 if r < rows else 0)

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._arrange(self.columns_for(event.size().width(), event.size().height()))

    def set_image(self, key: str, image) -> None:
        self.views[key].set_image(image)
