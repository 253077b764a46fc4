"""The chain editor: an op palette, the list of steps, and an editor per step made from its declarations.

* ``ChainModel`` is a pure (Qt-free) model of the recipe's steps with ``insert / remove / move / replace``
  and before/after listeners.
* Every edit is a ``QUndoCommand`` on a ``QUndoStack``; one slider drag merges into one undo step.
* ``StepListModel`` adapts ``ChainModel`` to a Qt list; drag-reorder (and Ctrl+Up/Down) call its move.
* ``StepEditor`` builds widgets from the op's ``Param`` declarations: slider + spin box for numbers and
  ranges, combo boxes for choices, a check box for bools, and the step's probability ``p``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QObject,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.core.engine.recipe import Recipe
from augstudio.core.ops.step import Step

MIME = "application/x-augstudio-step-rows"
_merge_ids = itertools.count(1)


# -- the pure model -----------------------------------------------------------------------------------
class ChainModel:
    """Ordered steps with change notifications (no Qt). Listeners get (phase, kind, args) with phase
    'before' or 'after' and kind insert(row) / remove(row) / move(src, dst) / replace(row) / reset()."""

    def __init__(self, steps: list[Step] | None = None):
        self.steps: list[Step] = list(steps or [])
        self.listeners: list[Callable] = []

    def _emit(self, phase, kind, *args):
        for fn in list(self.listeners):
            fn(phase, kind, *args)

    def __len__(self):
        return len(self.steps)

    def insert(self, row: int, step: Step) -> None:
        row = max(0, min(row, len(self.steps)))
        self._emit("before", "insert", row)
        self.steps.insert(row, step)
        self._emit("after", "insert", row)

    def remove(self, row: int) -> Step:
        self._emit("before", "remove", row)
        s = self.steps.pop(row)
        self._emit("after", "remove", row)
        return s

    def move(self, src: int, dst: int) -> None:
        """Move the step at ``src`` so that it ends at index ``dst``."""
        if src == dst:
            return
        self._emit("before", "move", src, dst)
        s = self.steps.pop(src)
        self.steps.insert(dst, s)
        self._emit("after", "move", src, dst)

    def replace(self, row: int, step: Step) -> None:
        self._emit("before", "replace", row)
        self.steps[row] = step
        self._emit("after", "replace", row)

    def reset(self, steps: list[Step]) -> None:
        self._emit("before", "reset")
        self.steps = list(steps)
        self._emit("after", "reset")


# -- undo commands --------------------------------------------------------------------------------------
class AddStep(QUndoCommand):
    def __init__(self, model: ChainModel, row: int, step: Step):
        super().__init__(f"Add {step.op}")
        self.model, self.row, self.step = model, row, step

    def redo(self):
        self.model.insert(self.row, self.step.copy())

    def undo(self):
        self.model.remove(self.row)


class RemoveStep(QUndoCommand):
    def __init__(self, model: ChainModel, row: int):
        super().__init__(f"Remove {model.steps[row].op}")
        self.model, self.row = model, row
        self.step = model.steps[row].copy()

    def redo(self):
        self.model.remove(self.row)

    def undo(self):
        self.model.insert(self.row, self.step.copy())


class MoveStep(QUndoCommand):
    def __init__(self, model: ChainModel, src: int, dst: int):
        super().__init__(f"Move {model.steps[src].op}")
        self.model, self.src, self.dst = model, src, dst

    def redo(self):
        self.model.move(self.src, self.dst)

    def undo(self):
        self.model.move(self.dst, self.src)


class SetStep(QUndoCommand):
    """Replace a step (a parameter, p, or enabled). Commands with the same merge key (one slider drag)
    merge into one undo step."""

    ID = 4242

    def __init__(self, model: ChainModel, row: int, new: Step, text: str, merge_key=None):
        super().__init__(text)
        self.model, self.row = model, row
        self.old = model.steps[row].copy()
        self.new = new
        self.merge_key = merge_key

    def id(self):
        return self.ID

    def mergeWith(self, other) -> bool:  # noqa: N802
        if (self.merge_key is None or other.merge_key != self.merge_key or other.row != self.row):
            return False
        self.new = other.new
        return True

    def redo(self):
        self.model.replace(self.row, self.new.copy())

    def undo(self):
        self.model.replace(self.row, self.old.copy())


class SetSeed(QUndoCommand):
    def __init__(self, ctrl, old: int, new: int):
        super().__init__(f"Seed {new}")
        self.ctrl, self.old, self.new = ctrl, old, new

    def redo(self):
        self.ctrl._set_seed(self.new)

    def undo(self):
        self.ctrl._set_seed(self.old)


# -- the controller: model + undo stack + the recipe file ------------------------------------------------
class ChainController(QObject):
    """Owns the editable chain, its undo stack and the recipe file; publishes the Recipe to the context."""

    file_changed = Signal()
    step_changed = Signal(int)

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.model = ChainModel()
        self.stack = QUndoStack(self)
        self.path: Path | None = None
        self.seed = 0
        self.batch: list[Step] = []
        self.extra: dict = {}
        self.model.listeners.append(self._on_model)
        self.stack.cleanChanged.connect(self._clean_changed)

    def _clean_changed(self, _clean: bool) -> None:
        self.file_changed.emit()

    # recipe <-> model
    def recipe(self) -> Recipe:
        return Recipe([s.copy() for s in self.model.steps], [s.copy() for s in self.batch], self.seed,
                      dict(self.extra), str(self.path) if self.path else None)

    def load(self, recipe: Recipe, path: Path | None = None) -> None:
        self.seed = recipe.seed
        self.batch = [s.copy() for s in recipe.batch]
        self.extra = dict(recipe.extra)
        self.path = Path(path) if path else None
        self.model.reset([s.copy() for s in recipe.steps])
        self.stack.clear()
        self.stack.setClean()
        self.file_changed.emit()
        self._publish()

    def open(self, path) -> None:
        from augstudio.core.engine.recipe import load_recipe

        self.load(load_recipe(path), Path(path))

    def save(self, path=None) -> Path:
        path = Path(path) if path else self.path
        if path is None:
            raise AugstudioError("no file name for the recipe: use Save As")
        self.recipe().save(path)
        self.path = path
        self.stack.setClean()
        self.file_changed.emit()
        return path

    def dirty(self) -> bool:
        return not self.stack.isClean()

    def title(self) -> str:
        return self.path.name if self.path else "untitled recipe"

    def _on_model(self, phase, kind, *args):
        if phase == "after":
            if kind == "replace":
                self.step_changed.emit(args[0])
            self._publish()

    def _publish(self):
        self.ctx.set_recipe(self.recipe())

    def _set_seed(self, seed: int):
        self.seed = seed
        self._publish()

    # edits (all undoable)
    def add(self, op: str, row: int | None = None) -> int:
        from augstudio.core.ops.step import parse_step

        step = parse_step({"op": op})
        row = len(self.model) if row is None else row
        self.stack.push(AddStep(self.model, row, step))
        return row

    def remove(self, row: int) -> None:
        if 0 <= row < len(self.model):
            self.stack.push(RemoveStep(self.model, row))

    def move(self, src: int, dst: int) -> None:
        n = len(self.model)
        dst = max(0, min(dst, n - 1))
        if 0 <= src < n and src != dst:
            self.stack.push(MoveStep(self.model, src, dst))

    def set_enabled(self, row: int, on: bool) -> None:
        s = self.model.steps[row].copy()
        if s.enabled == on:
            return
        s.enabled = on
        self.stack.push(SetStep(self.model, row, s, f"{'Enable' if on else 'Disable'} {s.op}"))

    def set_p(self, row: int, p: float, merge_key=None) -> None:
        s = self.model.steps[row].copy()
        if s.p == p:
            return
        s.p = float(p)
        self.stack.push(SetStep(self.model, row, s, f"{s.op}: p", merge_key))

    def set_param(self, row: int, name: str, value, merge_key=None) -> None:
        """Validate through the op's declarations; raises ParamError / RecipeError when refused."""
        from augstudio.core.ops.step import parse_step

        cur = self.model.steps[row]
        raw = cur.to_dict()
        raw[name] = value
        new = parse_step(raw, f"step {row + 1} ")
        if new.to_dict() == cur.to_dict():
            return
        self.stack.push(SetStep(self.model, row, new, f"{cur.op}: {name}", merge_key))

    def set_seed(self, seed: int) -> None:
        if seed != self.seed:
            self.stack.push(SetSeed(self, self.seed, int(seed)))


# -- Qt list adapter -------------------------------------------------------------------------------------
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
        return Qt.DropAction.MoveAction

    def mimeTypes(self):  # noqa: N802
        return [MIME]

    def mimeData(self, indexes):  # noqa: N802
        md = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        md.setData(MIME, QByteArray(json.dumps(rows).encode()))
        return md

    def dropMimeData(self, data, action, row, column, parent):  # noqa: N802
        """A drop moves the dragged step through the undoable move and returns False so that the view
        never deletes the source row itself."""
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


# -- per-parameter editors ---------------------------------------------------------------------------
class _Number(QWidget):
    """Slider + spin box for one number; emits (value, merge_key). A slider drag shares one merge key."""

    changed = Signal(object, object)
    STEPS = 1000

    def __init__(self, low, high, integer: bool, value, parent=None):
        super().__init__(parent)
        self.integer = integer
        self.low, self.high = low, high
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.spin = QSpinBox() if integer else QDoubleSpinBox()
        self.spin.setKeyboardTracking(False)
        lo = -1e9 if low is None else low
        hi = 1e9 if high is None else high
        if integer:
            self.spin.setRange(int(max(lo, -2**31 + 1)), int(min(hi, 2**31 - 1)))
        else:
            self.spin.setDecimals(4 if (hi - lo) <= 2 else 3)
            self.spin.setRange(lo, hi)
            self.spin.setSingleStep(_nice_step(lo, hi))
        self.spin.setMinimumWidth(74)
        self.slider = None
        if low is not None and high is not None and high > low:
            self.slider = QSlider(Qt.Orientation.Horizontal)
            n = int(high - low) if integer and high - low <= self.STEPS else self.STEPS
            self.slider.setRange(0, n)
            self.slider.sliderPressed.connect(self._press)
            self.slider.valueChanged.connect(self._slide)
            lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        self._key = None
        self.set_value(value)
        self.spin.valueChanged.connect(self._spun)

    def _to_slider(self, v) -> int:
        n = self.slider.maximum()
        return int(round((v - self.low) / (self.high - self.low) * n))

    def _from_slider(self, s: int):
        v = self.low + (self.high - self.low) * s / self.slider.maximum()
        return int(round(v)) if self.integer else round(v, 6)

    def set_value(self, v) -> None:
        if v is None:
            return
        self.spin.blockSignals(True)
        self.spin.setValue(v)
        self.spin.blockSignals(False)
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_slider(v))
            self.slider.blockSignals(False)

    def value(self):
        v = self.spin.value()
        return int(v) if self.integer else float(v)

    def _press(self):
        self._key = next(_merge_ids)

    def _slide(self, s: int):
        v = self._from_slider(s)
        self.spin.blockSignals(True)
        self.spin.setValue(v)
        self.spin.blockSignals(False)
        key = self._key if self.slider.isSliderDown() else None
        self.changed.emit(self.value(), key)

    def _spun(self, _v):
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_slider(self.value()))
            self.slider.blockSignals(False)
        self.changed.emit(self.value(), None)

    def dragging(self) -> bool:
        return self.slider is not None and self.slider.isSliderDown()


def _nice_step(lo, hi) -> float:
    span = hi - lo
    if span <= 1:
        return 0.01
    if span <= 10:
        return 0.05
    if span <= 100:
        return 0.5
    return 1.0


class ParamField(QWidget):
    """The editor of one declared parameter; emits ``changed(value, merge_key)``."""

    changed = Signal(object, object)

    def __init__(self, param, value, parent=None):
        super().__init__(parent)
        self.param = param
        k = param.kind
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.parts: list = []
        if k in ("float", "int"):
            w = _Number(param.low, param.high, k == "int", value)
            w.changed.connect(self.changed)
            self.parts = [w]
            lay.addWidget(w)
        elif k in ("range", "int_range"):
            a, b = value if isinstance(value, (list, tuple)) else (value, value)
            for i, v in enumerate((a, b)):
                w = _Number(param.low, param.high, k == "int_range", v)
                w.changed.connect(lambda _v, key, i=i: self._range_changed(i, key))
                self.parts.append(w)
                row = QHBoxLayout()
                lab = QLabel("low" if i == 0 else "high")
                lab.setFixedWidth(30)
                lab.setObjectName("dim")
                row.addWidget(lab)
                row.addWidget(w, 1)
                lay.addLayout(row)
        elif k == "bool":
            w = QCheckBox()
            w.setChecked(bool(value))
            w.toggled.connect(lambda on: self.changed.emit(bool(on), None))
            self.parts = [w]
            lay.addWidget(w)
        elif k == "choice":
            w = QComboBox()
            for c in param.choices:
                w.addItem(str(c), c)
            w.setCurrentIndex(max(0, list(param.choices).index(value)) if value in param.choices else 0)
            w.currentIndexChanged.connect(lambda i: self.changed.emit(param.choices[i], None))
            self.parts = [w]
            lay.addWidget(w)
        elif k == "size":
            row = QHBoxLayout()
            for v in (value or [1, 1]):
                s = QSpinBox()
                s.setRange(1, 65536)
                s.setKeyboardTracking(False)
                s.setValue(int(v))
                s.valueChanged.connect(lambda _v: self.changed.emit([p.value() for p in self.parts], None))
                self.parts.append(s)
                row.addWidget(s)
            lay.addLayout(row)
        elif k in ("fill", "str", "path"):
            w = QLineEdit(_fmt_value(value))
            if param.optional:
                w.setPlaceholderText("not set")
            w.editingFinished.connect(lambda: self._text_done(w.text()))
            self.parts = [w]
            if k == "path":
                row = QHBoxLayout()
                row.addWidget(w, 1)
                browse = QPushButton("…")
                browse.setFixedWidth(28)
                browse.setToolTip("choose a file")
                browse.clicked.connect(lambda: self._browse(w))
                row.addWidget(browse)
                lay.addLayout(row)
            else:
                lay.addWidget(w)
        else:  # steps: nested lists are edited in the recipe file
            n = len(value or [])
            lab = QLabel(f"{n} nested step{'s' * (n != 1)} (edit in the recipe file)")
            lab.setObjectName("dim")
            lay.addWidget(lab)
        if param.help:
            self.setToolTip(f"{param.name}: {param.help}" + (f"  [{param.describe_range()}]"
                                                              if param.describe_range() else ""))

    def _range_changed(self, i: int, key) -> None:
        a, b = self.parts[0].value(), self.parts[1].value()
        if a > b:  # keep the pair ordered: the handle being moved pushes the other
            if i == 0:
                self.parts[1].set_value(a)
                b = a
            else:
                self.parts[0].set_value(b)
                a = b
        self.changed.emit([a, b], key)

    def _browse(self, edit: QLineEdit) -> None:
        from PySide6.QtWidgets import QFileDialog

        p, _ = QFileDialog.getOpenFileName(self, f"Choose {self.param.name}", edit.text())
        if p:
            edit.setText(p)
            self._text_done(p)

    def _text_done(self, text: str) -> None:
        v: object = text
        if not text.strip() and self.param.optional:
            self.changed.emit(None, None)
            return
        if self.param.kind == "fill":
            try:
                nums = [float(t) for t in text.replace("[", "").replace("]", "").replace(",", " ").split()]
                nums = [int(x) if x.is_integer() else x for x in nums]
                v = nums[0] if len(nums) == 1 else nums
            except ValueError:
                v = text
        self.changed.emit(v, None)

    def set_value(self, value) -> None:
        k = self.param.kind
        for p in self.parts:
            p.blockSignals(True)
        try:
            if k in ("float", "int"):
                self.parts[0].set_value(value)
            elif k in ("range", "int_range"):
                self.parts[0].set_value(value[0])
                self.parts[1].set_value(value[1])
            elif k == "bool":
                self.parts[0].setChecked(bool(value))
            elif k == "choice" and value in self.param.choices:
                self.parts[0].setCurrentIndex(list(self.param.choices).index(value))
            elif k == "size":
                for p, v in zip(self.parts, value):
                    p.setValue(int(v))
            elif k in ("fill", "str", "path"):
                self.parts[0].setText(_fmt_value(value))
        finally:
            for p in self.parts:
                p.blockSignals(False)

    def dragging(self) -> bool:
        return any(isinstance(p, _Number) and p.dragging() for p in self.parts)


def _fmt_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


class StepEditor(QWidget):
    """Editors for the selected step: one field per declared parameter, plus p."""

    def __init__(self, ctrl: ChainController, parent=None):
        super().__init__(parent)
        self.ctrl = ctrl
        self.row = -1
        self.fields: dict[str, ParamField] = {}
        self.p_field: _Number | None = None
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(6, 6, 6, 6)
        self.title = QLabel("Select a step to edit its parameters")
        self.title.setObjectName("editorTitle")
        self.title.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setObjectName("dim")
        self.summary.setWordWrap(True)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.form.setContentsMargins(0, 4, 0, 0)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.lay.addWidget(self.title)
        self.lay.addWidget(self.summary)
        self.lay.addWidget(self.form_host)
        self.lay.addWidget(self.error)
        self.lay.addStretch(1)
        ctrl.step_changed.connect(self._step_changed)
        ctrl.model.listeners.append(self._on_model)

    def show_row(self, row: int) -> None:
        self.row = row
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields.clear()
        self.p_field = None
        self.error.hide()
        steps = self.ctrl.model.steps
        if not 0 <= row < len(steps):
            self.title.setText("Select a step to edit its parameters")
            self.summary.setText("")
            return
        from augstudio.core.ops.registry import get_op

        step = steps[row]
        cls = get_op(step.op)
        self.title.setText(f"<b>{row + 1}. {step.op}</b> <span style='color:#8a8f98'>· {cls.family}</span>")
        self.summary.setText(cls.summary)
        for p in cls.params:
            f = ParamField(p, step.values.get(p.name))
            f.changed.connect(lambda v, key, name=p.name: self._edit(name, v, key))
            lab = QLabel(p.name)
            lab.setToolTip(p.help)
            self.form.addRow(lab, f)
            self.fields[p.name] = f
        self.p_field = _Number(0.0, 1.0, False, step.p)
        self.p_field.setToolTip("probability of applying this step")
        self.p_field.changed.connect(self._edit_p)
        self.form.addRow(QLabel("p"), self.p_field)

    def _edit(self, name, value, key) -> None:
        try:
            self.ctrl.set_param(self.row, name, value, key)
            self.error.hide()
        except AugstudioError as e:
            self.error.setText(str(e))
            self.error.show()

    def _edit_p(self, value, key) -> None:
        self.ctrl.set_p(self.row, value, key)

    def _step_changed(self, row: int) -> None:
        if row != self.row:
            return
        step = self.ctrl.model.steps[row]
        for name, f in self.fields.items():
            if not f.dragging():
                f.set_value(step.values.get(name))
        if self.p_field is not None and not self.p_field.dragging():
            self.p_field.set_value(step.p)

    def _on_model(self, phase, kind, *args):
        if phase == "after" and (kind == "reset" or (kind == "remove" and self.row >= len(self.ctrl.model))):
            self.show_row(-1)


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
        from augstudio.core.ops.registry import all_ops

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
