"""The op palette: every registered op, grouped by family, with a filter (name or description) and drag into
the chain (the step list accepts ``OP_MIME``)."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QMimeData, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem

from augstudio.core.ops.registry import all_ops

OP_MIME = "application/x-augstudio-op"


class OpPalette(QTreeWidget):
    """All registered ops grouped by family; double-click (or Enter) adds one to the chain, dragging one
    onto the chain inserts it there. Typing a letter here goes to the filter box (``type_ahead``)."""

    add_requested = Signal(str)
    type_ahead = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("opPalette")
        self.setHeaderHidden(True)
        self.setRootIsDecorated(True)
        self.setIndentation(14)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.header().setStretchLastSection(False)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.itemActivated.connect(self._activated)
        self.filter_text = ""

    def populate(self) -> None:
        self.clear()
        fams: dict[str, list] = {}
        for name, cls in sorted(all_ops().items()):
            fams.setdefault(cls.family, []).append((name, cls))
        for fam in sorted(fams):
            top = QTreeWidgetItem([fam])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = top.font(0)
            f.setBold(True)
            top.setFont(0, f)
            for name, cls in fams[fam]:
                it = QTreeWidgetItem([name])
                it.setData(0, Qt.ItemDataRole.UserRole, name)
                it.setToolTip(0, f"{name}: {cls.summary}\n(double-click or drag onto the chain to add)")
                it.setData(0, Qt.ItemDataRole.UserRole + 1, f"{name} {fam} {cls.summary}".lower())
                it.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
                top.addChild(it)
            self.addTopLevelItem(top)
        self.expandAll()
        if self.filter_text:
            self.set_filter(self.filter_text)

    def ops(self):
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            for j in range(top.childCount()):
                yield top.child(j)

    def item_for(self, op: str) -> QTreeWidgetItem | None:
        return next((it for it in self.ops() if it.data(0, Qt.ItemDataRole.UserRole) == op), None)

    def set_filter(self, text: str) -> list[str]:
        """Show only the ops whose name, family or description holds every word of ``text``; returns the
        names shown (the first is selected, so Enter in the filter box adds it)."""
        self.filter_text = text
        words = text.lower().split()
        shown = []
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            any_child = False
            for j in range(top.childCount()):
                it = top.child(j)
                hay = it.data(0, Qt.ItemDataRole.UserRole + 1) or ""
                ok = all(w in hay for w in words)
                it.setHidden(not ok)
                if ok:
                    any_child = True
                    shown.append(it.data(0, Qt.ItemDataRole.UserRole))
            top.setHidden(not any_child)
            top.setExpanded(True)
        # name matches first: "crop" lists the crops before ops that mention cropping
        shown.sort(key=lambda n: (not any(w in n for w in words), n))
        if shown:
            first = self.item_for(shown[0])
            self.setCurrentItem(first)
            self.scrollToItem(first)
        return shown

    def current_op(self) -> str | None:
        it = self.currentItem()
        return it.data(0, Qt.ItemDataRole.UserRole) if it is not None and not it.isHidden() else None

    def mimeTypes(self):  # noqa: N802
        return [OP_MIME]

    def mimeData(self, items):  # noqa: N802
        names = [it.data(0, Qt.ItemDataRole.UserRole) for it in items if it.data(0, Qt.ItemDataRole.UserRole)]
        md = QMimeData()
        if names:
            md.setData(OP_MIME, QByteArray(names[0].encode()))
            md.setText(names[0])
        return md

    def keyPressEvent(self, e):  # noqa: N802
        text = e.text()
        if text and text.isprintable() and not text.isspace() and not e.modifiers() & (
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            self.type_ahead.emit(text)  # letters filter the list; they are never window shortcuts
            e.accept()
            return
        super().keyPressEvent(e)

    def _activated(self, it, _col=0) -> None:
        name = it.data(0, Qt.ItemDataRole.UserRole)
        if name:
            self.add_requested.emit(name)
