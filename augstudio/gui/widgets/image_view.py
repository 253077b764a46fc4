"""Image views shared by the panels.

* ``ImagePane``: pyqtgraph views in a grid with shared zoom / pan (HWC uint8 arrays, row-major), for the
  preview and the style panel's live result.
* ``ImageLabel``: a picture (anything ``to_qimage`` takes, or a QImage built on a worker) scaled to fit,
  kept fitted when the label is resized; for the saliency, mix and TTA views.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel

from augstudio.gui.qt.images import to_qimage

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

BG = "#1e1f22"


class ImagePane(pg.GraphicsLayoutWidget):
    """Views in a grid; all share zoom/pan with the first."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(BG)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.views: list[pg.ViewBox] = []
        self.items: list[pg.ImageItem] = []
        self.labels: list[pg.LabelItem] = []

    def set_layout(self, titles: list[str], cols: int) -> None:
        self.clear()
        self.views, self.items, self.labels = [], [], []
        for i, t in enumerate(titles):
            r, c = divmod(i, cols)
            lab = self.addLabel(t, row=2 * r, col=c, color="#c8ccd4", size="9pt")
            vb = self.addViewBox(row=2 * r + 1, col=c, lockAspect=True, invertY=True, enableMenu=False)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            if self.views:
                vb.setXLink(self.views[0])
                vb.setYLink(self.views[0])
            self.views.append(vb)
            self.items.append(img)
            self.labels.append(lab)

    def show(self, i: int, a: np.ndarray, title: str | None = None) -> None:
        self.items[i].setImage(a, autoLevels=False, levels=(0, 255))
        if title is not None:
            self.labels[i].setText(title)

    def fit(self, h: int, w: int) -> None:
        if self.views:
            self.views[0].setRange(xRange=(0, w), yRange=(0, h), padding=0.02)


class ImageLabel(QLabel):
    def __init__(self, text: str = "", parent=None):
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._pixmap: QPixmap | None = None

    def sizeHint(self) -> QSize:  # noqa: N802 - not the pixmap's size: the picture fits whatever it is given
        return QSize(128, 128)

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
