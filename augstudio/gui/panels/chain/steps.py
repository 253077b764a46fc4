"""The list of steps as Qt sees it: ``StepListModel`` adapts the pure ``ChainModel``; drag-reorder, an op
dragged in from the palette, the check box and the keys (Delete, Ctrl+Up/Down) go through the controller,
so every change is undoable."""

from __future__ import annotations

import json

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QListView

from augstudio.core.base.errors import AugstudioError
from augstudio.core.ops.step import Step
from augstudio.gui.panels.chain.controller import ChainController
from augstudio.gui.panels.chain.model import ChainModel
from augstudio.gui.panels.chain.palette import OP_MIME

MIME = "application/x-augstudio-step-rows"


def step_summary(step: Step) -> str:
    parts = []
    for k, v in step.values.items():
        if isinstance(v, list) and v and isinstance(v[0], Step):
            v = f"[{len(v)} steps]"
        elif isinstance(v, float):
            v = f"{v:g}"
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + "]"
        parts.append(f"{k}={v}")
    p = "" if step.p == 1 else f"p={step.p:g}  "
    return p + "  ".join(parts)


class StepListModel(QAbstractListModel):
    op_dropped = Signal(int)  # the row where an op from the palette was added
    drop_refused = Signal(str)  # why an op from the palette could not be added

    def __init__(self, ctrl: ChainController, parent=None):
        super().__init__(parent)
        self.ctrl = ctrl
        ctrl.model.listeners.append(self._on_model)

    @property
    def chain(self) -> ChainModel:
        return self.ctrl.model

    def _on_model(self, phase, kind, *args):
        if kind == "insert":
            if phase == "before":
                self.beginInsertRows(QModelIndex(), args[0], args[0])
            else:
                self.endInsertRows()
        elif kind == "remove":
            if phase == "before":
                self.beginRemoveRows(QModelIndex(), args[0], args[0])
            else:
                self.endRemoveRows()
        elif kind == "move":
            src, dst = args
            if phase == "before":
                self.beginMoveRows(QModelIndex(), src, src, QModelIndex(), dst + 1 if dst > src else dst)
            else:
                self.endMoveRows()
        elif kind == "replace" and phase == "after":
            idx = self.index(args[0])
            self.dataChanged.emit(idx, idx)
        elif kind == "reset":
            if phase == "before":
                self.beginResetModel()
            else:
                self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: N802
        return 0 if parent.isValid() else len(self.chain)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.chain.steps[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{index.row() + 1}. {s.op}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return step_summary(s) or s.op
        if role == Qt.ItemDataRole.CheckStateRole:
            return Qt.CheckState.Checked if s.enabled else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.UserRole:
            return step_summary(s)
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):  # noqa: N802
        if role == Qt.ItemDataRole.CheckStateRole and index.isValid():
            on = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
            self.ctrl.set_enabled(index.row(), on)
            return True
        return False

    def flags(self, index):
        f = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsDropEnabled
        if index.isValid():
            f |= Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled
            f &= ~Qt.ItemFlag.ItemIsDropEnabled
        return f

    def supportedDropActions(self):  # noqa: N802
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def mimeTypes(self):  # noqa: N802
        return [MIME, OP_MIME]

    def mimeData(self, indexes):  # noqa: N802
        md = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        md.setData(MIME, QByteArray(json.dumps(rows).encode()))
        return md

    def dropMimeData(self, data, action, row, column, parent):  # noqa: N802
        """A dragged step moves through the undoable move (returning False, so that the view never deletes
        the source row itself); an op from the palette is added where it is dropped."""
        if data.hasFormat(OP_MIME):
            if row < 0:
                row = parent.row() if parent.isValid() else len(self.chain)
            try:
                added = self.ctrl.add(bytes(data.data(OP_MIME)).decode(), row)
            except AugstudioError as e:
                self.drop_refused.emit(str(e))
                return False
            self.op_dropped.emit(added)
            return True
        if not data.hasFormat(MIME):
            return False
        rows = json.loads(bytes(data.data(MIME)).decode() or "[]")
        if len(rows) != 1:
            return False
        src = rows[0]
        if row < 0:
            row = parent.row() if parent.isValid() else len(self.chain)
        dst = row - 1 if row > src else row
        self.ctrl.move(src, dst)
        return False

    def moveRows(self, src_parent, src_row, count, dst_parent, dst_child):  # noqa: N802
        if count != 1:
            return False
        dst = dst_child - 1 if dst_child > src_row else dst_child
        self.ctrl.move(src_row, dst)
        return True


class StepListView(QListView):
    """The steps; Delete removes, Ctrl+Up/Down moves, drag reorders, the check box enables."""

    def __init__(self, ctrl: ChainController, parent=None):
        super().__init__(parent)
        self.ctrl = ctrl
        self.setObjectName("stepList")
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)  # drops of foreign data are refused by the model
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)

    def keyPressEvent(self, e):  # noqa: N802
        row = self.currentIndex().row()
        mods = e.modifiers()
        if e.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and row >= 0:
            self.ctrl.remove(row)
            n = self.model().rowCount()
            if n:
                self.setCurrentIndex(self.model().index(min(row, n - 1)))
            return
        if mods & Qt.KeyboardModifier.ControlModifier and e.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down) and row >= 0:
            dst = row - 1 if e.key() == Qt.Key.Key_Up else row + 1
            if 0 <= dst < self.model().rowCount():
                self.ctrl.move(row, dst)
                self.setCurrentIndex(self.model().index(dst))
            return
        super().keyPressEvent(e)
