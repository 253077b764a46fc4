"""The chain editor panel: the op palette, the list of steps and the selected step's editor, with
undo / redo actions for the Edit menu. The pieces live beside it (see the package docstring)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.gui.panels.chain.controller import ChainController
from augstudio.gui.panels.chain.palette import OpPalette
from augstudio.gui.panels.chain.step_editor import StepEditor
from augstudio.gui.panels.chain.steps import StepListModel, StepListView


class ChainEditor(QWidget):
    """Palette + step list + step editor, with undo/redo actions."""

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.ctrl = ChainController(ctx, self)
        self.palette = OpPalette()
        self.steps_model = StepListModel(self.ctrl, self)
        self.steps = StepListView(self.ctrl)
        self.steps.setModel(self.steps_model)
        self.editor = StepEditor(self.ctrl)
        self.undo_action = self.ctrl.stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.ctrl.stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)

        self.add_btn = QPushButton("Add ▸")
        self.add_btn.setToolTip("add the selected op after the current step (or double-click it)")
        self.remove_btn = QPushButton("Remove")
        self.up_btn = QPushButton("▲")
        self.down_btn = QPushButton("▼")
        for b, tip in ((self.up_btn, "move up (Ctrl+Up)"), (self.down_btn, "move down (Ctrl+Down)")):
            b.setToolTip(tip)
            b.setFixedWidth(32)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setKeyboardTracking(False)
        self.seed_spin.setToolTip("recipe seed: with the item and copy index it fixes every random draw")
        self.batch_label = QLabel("")
        self.batch_label.setObjectName("dim")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        cap = QLabel("Ops")
        cap.setObjectName("caption")
        ll.addWidget(cap)
        ll.addWidget(self.palette, 1)
        ll.addWidget(self.add_btn)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        cap2 = QLabel("Chain")
        cap2.setObjectName("caption")
        head.addWidget(cap2)
        head.addStretch(1)
        head.addWidget(QLabel("seed"))
        head.addWidget(self.seed_spin)
        ml.addLayout(head)
        ml.addWidget(self.steps, 1)
        btns = QHBoxLayout()
        btns.addWidget(self.remove_btn)
        btns.addStretch(1)
        btns.addWidget(self.up_btn)
        btns.addWidget(self.down_btn)
        ml.addLayout(btns)
        ml.addWidget(self.batch_label)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.editor)

        top_split = QSplitter(Qt.Orientation.Horizontal)
        top_split.addWidget(left)
        top_split.addWidget(mid)
        top_split.setSizes([140, 200])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top_split)
        split.addWidget(scroll)
        split.setSizes([260, 300])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.palette.add_requested.connect(self.add_op)
        self.add_btn.clicked.connect(self._add_selected)
        self.remove_btn.clicked.connect(lambda: self.ctrl.remove(self.current_row()))
        self.up_btn.clicked.connect(lambda: self._move_current(-1))
        self.down_btn.clicked.connect(lambda: self._move_current(+1))
        self.steps.selectionModel().currentChanged.connect(lambda cur, _p: self.editor.show_row(cur.row()))
        self.seed_spin.valueChanged.connect(self.ctrl.set_seed)
        self.ctrl.file_changed.connect(self._sync_file)
        self.ctrl.stack.indexChanged.connect(lambda _i: self._sync_seed())
        for w in (self.add_btn, self.remove_btn, self.up_btn, self.down_btn):
            w.setEnabled(False)
        self.setEnabled(False)

    def enable(self) -> None:
        """Called once the op registry (torch) is loaded."""
        self.palette.populate()
        self.setEnabled(True)
        for w in (self.add_btn, self.remove_btn, self.up_btn, self.down_btn):
            w.setEnabled(True)

    def current_row(self) -> int:
        return self.steps.currentIndex().row()

    def add_op(self, name: str) -> None:
        cur = self.current_row()
        row = len(self.ctrl.model) if cur < 0 else cur + 1
        try:
            self.ctrl.add(name, row)
        except AugstudioError as e:
            self.ctx.status_message.emit(str(e))
            return
        self.steps.setCurrentIndex(self.steps_model.index(row))

    def _add_selected(self) -> None:
        it = self.palette.currentItem()
        if it is not None and it.data(0, Qt.ItemDataRole.UserRole):
            self.add_op(it.data(0, Qt.ItemDataRole.UserRole))

    def _move_current(self, d: int) -> None:
        row = self.current_row()
        dst = row + d
        if row >= 0 and 0 <= dst < len(self.ctrl.model):
            self.ctrl.move(row, dst)
            self.steps.setCurrentIndex(self.steps_model.index(dst))

    def _sync_seed(self) -> None:
        self.seed_spin.blockSignals(True)
        self.seed_spin.setValue(self.ctrl.seed)
        self.seed_spin.blockSignals(False)

    def _sync_file(self) -> None:
        self._sync_seed()
        n = len(self.ctrl.batch)
        self.batch_label.setText(f"batch stage: {', '.join(s.op for s in self.ctrl.batch)} (from the file)"
                                 if n else "")
        if self.editor.row >= len(self.ctrl.model):
            self.editor.show_row(-1)
        if not self.steps.currentIndex().isValid() and len(self.ctrl.model):
            self.steps.setCurrentIndex(self.steps_model.index(0))

    def actions_for_menu(self) -> list[QAction]:
        return [self.undo_action, self.redo_action]
