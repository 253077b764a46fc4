"""The dataset browser: a class sidebar with counts and a thumbnail grid (model/view).

Thumbnails are decoded by a few background threads with Pillow only (``draft`` + ``thumbnail``; no torch),
newest request first, so the rows on screen come first while scrolling. Finished thumbnails are kept as
QPixmaps in an LRU cache bounded by a memory budget. Files that cannot be read carry a warning mark and
their reason as a tooltip.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

from PIL import Image, ImageOps
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.io.dataset import Dataset, Item
from augstudio.core.io.images import _open_checked
from augstudio.gui.qt import gc_guard
from augstudio.gui.qt.images import to_qimage

THUMB = 96
ItemRole = Qt.ItemDataRole.UserRole + 1
BadRole = Qt.ItemDataRole.UserRole + 2


def make_thumbnail(path: Path, size: int = THUMB) -> QImage:
    """Decode a small RGB(A) thumbnail with Pillow (JPEG draft mode decodes at reduced scale)."""
    im = _open_checked(Path(path))
    try:
        if im.format == "JPEG":
            im.draft("RGB", (size * 2, size * 2))
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im) or im
        if im.mode == "P" and im.width * im.height <= size * size * 4:
            # small palette images (wafer maps): nearest keeps the dies crisp
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            scale = max(1, size // max(im.width, im.height))
            im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
        else:
            if im.mode not in ("RGB", "RGBA"):
                im = im.convert("RGBA" if ("A" in im.mode or "transparency" in im.info) else "RGB")
            im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return to_qimage(im)
    finally:
        im.close()


class _LoaderBridge(QObject):
    loaded = Signal(str, object, str)  # rel path, QImage | None, error reason


class ThumbnailLoader(QObject):
    """Background decoding: newest request first; requests beyond ``max_queue`` are dropped (they are
    asked for again when their rows are painted)."""

    loaded = Signal(str, object, str)

    def __init__(self, threads: int = 2, size: int = THUMB, max_queue: int = 512, parent=None):
        super().__init__(parent)
        self.size = size
        self.max_queue = max_queue
        self._queue: deque = deque()
        self._queued: set = set()
        self._cv = threading.Condition()
        self._stop = False
        self._generation = 0
        self._bridge = _LoaderBridge()
        self._bridge.loaded.connect(self.loaded)
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"augstudio-thumbs-{i}")
                         for i in range(threads)]
        for t in self._threads:
            gc_guard.hold()  # the thread runs Python from its first line to its last (see gc_guard)
            t.start()

    def request(self, root: Path, rel: str) -> None:
        with self._cv:
            if rel in self._queued:
                return
            self._queue.append((self._generation, root, rel))
            self._queued.add(rel)
            while len(self._queue) > self.max_queue:
                _, _, old = self._queue.popleft()
                self._queued.discard(old)
            self._cv.notify()

    def clear(self) -> None:
        with self._cv:
            self._generation += 1
            self._queue.clear()
            self._queued.clear()

    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._queue.clear()
            self._cv.notify_all()
        end = time.monotonic() + 0.3  # daemon threads: a decode in progress is not waited for long
        for t in self._threads:
            t.join(timeout=max(0.0, end - time.monotonic()))

    def _work(self) -> None:
        try:
            self._loop()
        finally:
            gc_guard.release()  # taken in __init__ for this thread

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                gen, root, rel = self._queue.pop()  # newest first
                self._queued.discard(rel)
                if gen != self._generation:
                    continue
            try:
                img, err = make_thumbnail(root / rel, self.size), ""
            except Exception as e:  # noqa: BLE001 - any bad file is shown, never fatal
                img, err = None, getattr(e, "cause", None) or str(e)
            with self._cv:
                stale = gen != self._generation or self._stop
            if not stale:
                self._bridge.loaded.emit(rel, img, err)


class PixmapCache:
    """LRU cache of QPixmaps bounded by bytes (GUI thread only)."""

    def __init__(self, budget_bytes: int = 48 * 1024 * 1024):
        self.budget = budget_bytes
        self.used = 0
        self._d: OrderedDict[str, QPixmap] = OrderedDict()

    @staticmethod
    def cost(pm: QPixmap) -> int:
        return max(1, pm.width() * pm.height() * 4)

    def get(self, key: str) -> QPixmap | None:
        pm = self._d.get(key)
        if pm is not None:
            self._d.move_to_end(key)
        return pm

    def put(self, key: str, pm: QPixmap) -> None:
        old = self._d.pop(key, None)
        if old is not None:
            self.used -= self.cost(old)
        self._d[key] = pm
        self.used += self.cost(pm)
        while self.used > self.budget and len(self._d) > 1:
            _, ev = self._d.popitem(last=False)
            self.used -= self.cost(ev)

    def clear(self) -> None:
        self._d.clear()
        self.used = 0

    def __len__(self) -> int:
        return len(self._d)


def _placeholder(size: int, color: QColor) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(color)
    return pm


class ThumbnailModel(QAbstractListModel):
    """Items of the open dataset (optionally filtered by class) with lazily loaded thumbnails. ``bad`` holds
    every file known to be unreadable (found by the scan, or when its thumbnail failed to decode);
    ``bad_count_changed`` reports how many of the dataset's items that is."""

    bad_count_changed = Signal(int)

    def __init__(self, loader: ThumbnailLoader, cache: PixmapCache, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.cache = cache
        self.dataset: Dataset | None = None
        self.items: list[Item] = []
        self.bad: dict[str, str] = {}
        self._items_all: set[str] = set()
        self.class_filter: str | None = None
        self._row_of: dict[str, int] = {}
        self._placeholder = _placeholder(THUMB, QColor(58, 60, 66))
        self._warn_icon = None
        loader.loaded.connect(self._on_loaded)

    def set_dataset(self, ds: Dataset | None) -> None:
        self.beginResetModel()
        self.loader.clear()
        self.cache.clear()
        self.dataset = ds
        self.bad = {p.path: p.reason for p in ds.problems} if ds else {}
        self._items_all = {it.path for it in ds.items} if ds else set()
        self.class_filter = None
        self._refilter()
        self.endResetModel()
        self.bad_count_changed.emit(self.bad_count())

    def bad_count(self) -> int:
        """How many of the dataset's files are known to be unreadable (a thumbnail failing adds one)."""
        return sum(1 for p in self.bad if p in self._items_all) if self.dataset is not None else 0

    def set_class_filter(self, name: str | None) -> None:
        self.beginResetModel()
        self.class_filter = name
        self._refilter()
        self.loader.clear()
        self.endResetModel()

    def _refilter(self) -> None:
        ds = self.dataset
        if ds is None:
            self.items = []
        elif self.class_filter is None:
            self.items = ds.items
        else:
            self.items = ds.by_class(self.class_filter)
        self._row_of = {it.path: i for i, it in enumerate(self.items)}

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.items):
            return None
        it = self.items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return it.path.rsplit("/", 1)[-1]
        if role == Qt.ItemDataRole.DecorationRole:
            if it.path in self.bad:
                return self._warning_pixmap()
            pm = self.cache.get(it.path)
            if pm is None:
                self.loader.request(self.dataset.root, it.path)
                return self._placeholder
            return pm
        if role == Qt.ItemDataRole.ToolTipRole:
            reason = self.bad.get(it.path)
            cls = f"{it.class_name}/" if it.class_name else ""
            return f"{cls}{it.path.rsplit('/', 1)[-1]}" + (f"\n⚠ {reason}" if reason else "")
        if role == ItemRole:
            return it
        if role == BadRole:
            return self.bad.get(it.path)
        return None

    def _warning_pixmap(self) -> QPixmap:
        if self._warn_icon is None:
            pm = _placeholder(THUMB, QColor(70, 40, 40))
            icon = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
            p = QPainter(pm)
            icon.paint(p, THUMB // 4, THUMB // 4, THUMB // 2, THUMB // 2)
            p.end()
            self._warn_icon = pm
        return self._warn_icon

    def _on_loaded(self, rel: str, img, err: str) -> None:
        row = self._row_of.get(rel)
        if img is None:
            new = rel not in self.bad
            self.bad[rel] = err or "cannot be decoded"
            if new:
                self.bad_count_changed.emit(self.bad_count())
        else:
            self.cache.put(rel, QPixmap.fromImage(img))
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole])

    def row_of(self, rel: str) -> int | None:
        return self._row_of.get(rel)


class ClassSidebar(QListWidget):
    """'All' plus one row per class with its count; selecting a row filters the grid."""

    class_selected = Signal(object)  # class name or None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("classSidebar")
        self.currentItemChanged.connect(self._changed)

    def set_dataset(self, ds: Dataset | None) -> None:
        self.blockSignals(True)
        self.clear()
        if ds is not None:
            it = QListWidgetItem(f"All  ({len(ds)})")
            it.setData(Qt.ItemDataRole.UserRole, None)
            self.addItem(it)
            for name, n in ds.counts().items():
                it = QListWidgetItem(f"{name}  ({n})")
                it.setData(Qt.ItemDataRole.UserRole, name)
                self.addItem(it)
            self.setCurrentRow(0)
        self.blockSignals(False)

    def select_class(self, name: str | None) -> None:
        for i in range(self.count()):
            if self.item(i).data(Qt.ItemDataRole.UserRole) == name:
                self.setCurrentRow(i)
                return

    def _changed(self, cur, _prev) -> None:
        self.class_selected.emit(cur.data(Qt.ItemDataRole.UserRole) if cur is not None else None)


class BrowserWidget(QWidget):
    """Class sidebar + thumbnail grid; the current thumbnail becomes the context's current item. The header
    counts the unreadable files as the grid finds them (``bad_count_changed``)."""

    first_thumbnails = Signal()
    bad_count_changed = Signal(int)

    def __init__(self, ctx, parent=None, cache_mb: int = 48):
        super().__init__(parent)
        self.ctx = ctx
        self.loader = ThumbnailLoader(parent=self)
        self.cache = PixmapCache(cache_mb * 1024 * 1024)
        self.model = ThumbnailModel(self.loader, self.cache, self)
        self.sidebar = ClassSidebar()
        self.view = QListView()
        self.view.setObjectName("thumbGrid")
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setUniformItemSizes(True)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setIconSize(QSize(THUMB, THUMB))
        self.view.setGridSize(QSize(THUMB + 16, THUMB + 26))
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(2000)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setWordWrap(False)
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.header = QLabel("No dataset")
        self.header.setObjectName("browserHeader")
        f = QFont(self.header.font())
        f.setBold(True)
        self.header.setFont(f)

        self.sidebar.setMinimumWidth(80)
        self.view.setMinimumWidth(THUMB + 16 + 24)  # one column and the scroll bar
        split = self.split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(self.sidebar)
        split.addWidget(self.view)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([110, 450])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(self.header)
        top.addStretch(1)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        self.sidebar.class_selected.connect(self.set_class_filter)
        self.model.loader.loaded.connect(self._first_loaded)
        self.model.bad_count_changed.connect(self._bad_changed)
        self._got_first = False
        ctx.dataset_changed.connect(self._on_dataset)

    def _on_dataset(self, ds) -> None:
        self._got_first = False
        self.model.set_dataset(ds)
        self.sidebar.set_dataset(ds)
        if self.split.orientation() == Qt.Orientation.Vertical:
            rows = min(140, self.sidebar.count() * 22 + 12)
            self.split.setSizes([rows, max(200, self.height() - rows)])
        self._update_header()
        if ds is not None and len(ds):
            self.view.setCurrentIndex(self.model.index(0))

    WIDE = 420  # narrower than this, the class list goes above the thumbnails (two columns of them fit)

    def resizeEvent(self, e):  # noqa: N802
        super().resizeEvent(e)
        want = Qt.Orientation.Horizontal if e.size().width() >= self.WIDE else Qt.Orientation.Vertical
        if self.split.orientation() != want:
            self.split.setOrientation(want)
            if want == Qt.Orientation.Vertical:
                rows = self.sidebar.count() * 22 + 12
                self.split.setSizes([min(rows, 140), max(200, e.size().height() - min(rows, 140))])
            else:
                self.split.setSizes([110, max(200, e.size().width() - 110)])

    def _bad_changed(self, n: int) -> None:
        self._update_header()
        self.bad_count_changed.emit(n)

    def _update_header(self) -> None:
        ds = self.model.dataset
        if ds is None:
            self.header.setText("No dataset")
            self.header.setToolTip("")
            return
        if not len(ds):
            self.header.setText(f"{ds.root.name}  ·  no images")
            self.header.setToolTip(f"{ds.root}: no image files found (png, jpg, bmp, tif, webp …)")
            return
        bad = self.model.bad_count()
        warn = f"  ·  ⚠ {bad} unreadable" if bad else ""
        self.header.setText(f"{ds.root.name}  ·  {len(ds)} images  ·  {len(ds.classes)} classes{warn}")
        self.header.setToolTip(str(ds.root))

    def _first_loaded(self, *_):
        if not self._got_first:
            self._got_first = True
            self.first_thumbnails.emit()

    def set_class_filter(self, name: str | None) -> None:
        cur = self.ctx.current_item()
        self.model.set_class_filter(name)
        if self.sidebar.currentItem() is None or self.sidebar.currentItem().data(Qt.ItemDataRole.UserRole) != name:
            self.sidebar.blockSignals(True)
            self.sidebar.select_class(name)
            self.sidebar.blockSignals(False)
        row = self.model.row_of(cur.path) if cur is not None else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.view.setCurrentIndex(self.model.index(row))

    def _current_changed(self, cur: QModelIndex, _prev) -> None:
        item = self.model.data(cur, ItemRole) if cur.isValid() else None
        self.ctx.set_current_item(item)

    def shutdown(self) -> None:
        self.loader.stop()
