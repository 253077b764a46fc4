"""The chain editor panel, top to bottom: the op palette with its filter box, the list of steps and the
selected step's editor (one column, so op names and sliders get the dock's whole width), with undo / redo
and "copy as code" actions for the Edit menu. The pieces live beside it (see the package docstring)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.gui.panels.chain.code import recipe_code
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

        self.copy_code_action = QAction("Copy recipe as &code", self)
        self.copy_code_action.setToolTip("copy the Python lines that load this recipe in training code")
        self.copy_code_action.triggered.connect(self.copy_code)

        self.search = QLineEdit()
        self.search.setPlaceholderText("filter ops (name or what it does)…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Enter adds the first match after the current step")
        self.add_btn = QPushButton("Add")
        self.add_btn.setToolTip("add the selected op after the current step (or double-click it, or drag it "
                                "onto the chain)")
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

        self.code_btn = QToolButton()
        self.code_btn.setDefaultAction(self.copy_code_action)
        self.code_btn.setText("Copy as code")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(3)
        ops_head = QHBoxLayout()
        cap = QLabel("Ops")
        cap.setObjectName("caption")
        ops_head.addWidget(cap)
        ops_head.addWidget(self.search, 1)
        ops_head.addWidget(self.add_btn)
        ll.addLayout(ops_head)
        ll.addWidget(self.palette, 1)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.setSpacing(3)
        head = QHBoxLayout()
        cap2 = QLabel("Chain")
        cap2.setObjectName("caption")
        head.addWidget(cap2)
        head.addStretch(1)
        head.addWidget(QLabel("seed"))
        head.addWidget(self.seed_spin)
        head.addWidget(self.code_btn)
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

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(left)
        split.addWidget(mid)
        split.addWidget(scroll)
        left.setMinimumHeight(90)
        mid.setMinimumHeight(90)
        scroll.setMinimumHeight(120)
        split.setSizes([200, 170, 320])
        split.setStretchFactor(2, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.palette.add_requested.connect(self.add_op)
        self.palette.type_ahead.connect(self._type_ahead)
        self.search.textChanged.connect(self.palette.set_filter)
        self.search.returnPressed.connect(self._add_selected)
        self.add_btn.clicked.connect(self._add_selected)
        self.remove_btn.clicked.connect(lambda: self.ctrl.remove(self.current_row()))
        self.up_btn.clicked.connect(lambda: self._move_current(-1))
        self.down_btn.clicked.connect(lambda: self._move_current(+1))
        self.steps.selectionModel().currentChanged.connect(lambda cur, _p: self.editor.show_row(cur.row()))
        self.seed_spin.valueChanged.connect(self.ctrl.set_seed)
        self.ctrl.file_changed.connect(self._sync_file)
        self.ctrl.stack.indexChanged.connect(lambda _i: self._sync_seed())
        self.steps_model.op_dropped.connect(lambda row: self.steps.setCurrentIndex(self.steps_model.index(row)))
        self.steps_model.drop_refused.connect(self.ctx.status_message)
        for w in (self.add_btn, self.remove_btn, self.up_btn, self.down_btn):
            w.setEnabled(False)
        self.setEnabled(False)

    def _type_ahead(self, text: str) -> None:
        self.search.setFocus()
        self.search.setText(self.search.text() + text)

    def code(self) -> str:
        """The Python lines for training code that load this recipe (the saved file when it holds it)."""
        ctrl = self.ctrl
        ds = self.ctx.dataset()
        item = self.ctx.current_item()
        path = ctrl.path if ctrl.path is not None and not ctrl.dirty() else None
        return recipe_code(ctrl.recipe(), path, ds.root if ds is not None else None,
                           ds is not None and ds.layout == "imagefolder", item.path if item else None,
                           len(ds.classes) if ds is not None and ds.classes else None)

    def copy_code(self) -> str:
        text = self.code()
        QGuiApplication.clipboard().setText(text)
        self.ctx.status_message.emit("copied: the Python lines that load this recipe"
                                     + ("" if self.ctrl.path and not self.ctrl.dirty()
                                        else " (inlined: save the recipe to load it from its file)"))
        return text

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
        name = self.palette.current_op()
        if name:
            self.add_op(name)

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
