"""The editor of the selected step: its fields come from the op's ``Param`` declarations (the shared
``widgets.params`` factory), plus the step's probability ``p``; a refused value shows the op's message."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from augstudio.core.base.errors import AugstudioError
from augstudio.core.ops.registry import get_op
from augstudio.gui.panels.chain.controller import ChainController
from augstudio.gui.widgets.params import NumberField, ParamField, ParamForm


class StepEditor(QWidget):
    """Editors for the selected step: one field per declared parameter, plus p."""

    def __init__(self, ctrl: ChainController, parent=None):
        super().__init__(parent)
        self.ctrl = ctrl
        self.row = -1
        self.fields: dict[str, ParamField] = {}  # the shown step's fields (tests drive them)
        self.p_field: NumberField | None = None
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
        self.param_form: ParamForm = ParamForm(())
        self.lay.addWidget(self.title)
        self.lay.addWidget(self.summary)
        self.lay.addWidget(self.param_form)
        self.lay.addWidget(self.error)
        self.lay.addStretch(1)
        ctrl.step_changed.connect(self._step_changed)
        ctrl.model.listeners.append(self._on_model)

    def show_row(self, row: int) -> None:
        self.row = row
        self.p_field = None
        self.error.hide()
        steps = self.ctrl.model.steps
        valid = 0 <= row < len(steps)
        cls = get_op(steps[row].op) if valid else None
        form = ParamForm(cls.params if valid else (), steps[row].values if valid else None)
        self.lay.replaceWidget(self.param_form, form)
        self.param_form.hide()  # at once; deleted when the event loop next runs
        self.param_form.deleteLater()
        self.param_form = form
        self.fields = form.fields
        if not valid:
            self.title.setText("Select a step to edit its parameters")
            self.summary.setText("")
            return
        self._set_title()
        self.summary.setText(cls.summary)
        step = steps[row]
        form.changed.connect(self._edit)
        self.p_field = NumberField(0.0, 1.0, False, step.p)
        self.p_field.setToolTip("probability of applying this step")
        self.p_field.changed.connect(self._edit_p)
        form.form.addRow(QLabel("p"), self.p_field)

    def _set_title(self) -> None:
        step = self.ctrl.model.steps[self.row]
        family = get_op(step.op).family
        self.title.setText(f"<b>{self.row + 1}. {step.op}</b> <span style='color:#8a8f98'>· {family}</span>")

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
        for name in self.fields:
            self.param_form.set_value(name, step.values.get(name))
        if self.p_field is not None and not self.p_field.dragging():
            self.p_field.set_value(step.p)

    def _on_model(self, phase, kind, *args):
        """Follow the shown step when steps move, arrive or go (its number is in the title)."""
        if phase != "after" or self.row < 0:
            return
        if kind == "reset":
            self.show_row(-1)
            return
        row = self.row
        if kind == "move":
            src, dst = args
            if row == src:
                row = dst
            elif src < row <= dst:
                row -= 1
            elif dst <= row < src:
                row += 1
        elif kind == "insert" and args[0] <= row:
            row += 1
        elif kind == "remove":
            if args[0] == row:
                self.show_row(-1)
                return
            if args[0] < row:
                row -= 1
        if row != self.row:
            self.row = row
            self._set_title()
