"""The op palette: every registered op, grouped by family."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from augstudio.core.ops.registry import all_ops


class OpPalette(QTreeWidget):
    """All registered ops grouped by family; double-click (or Enter) adds one to the chain."""

    add_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("opPalette")
        self.setHeaderHidden(True)
        self.setRootIsDecorated(True)
        self.itemActivated.connect(self._activated)
        self.itemDoubleClicked.connect(lambda it, _c: None)  # activation covers double-click

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
                it.setToolTip(0, cls.summary)
                top.addChild(it)
            self.addTopLevelItem(top)
        self.expandAll()

    def item_for(self, op: str) -> QTreeWidgetItem | None:
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            for j in range(top.childCount()):
                if top.child(j).data(0, Qt.ItemDataRole.UserRole) == op:
                    return top.child(j)
        return None

    def _activated(self, it, _col=0) -> None:
        name = it.data(0, Qt.ItemDataRole.UserRole)
        if name:
            self.add_requested.emit(name)
