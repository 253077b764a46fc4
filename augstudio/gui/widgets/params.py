"""Editors made from parameter declarations (``core.ops.params.Param``): one factory for the chain
editor's step editor and the Mix panel's PuzzleMix form.

* ``NumberField``: slider (over the parameter's typical span, Shift+drag for fine steps) + spin box (the
  whole legal range) for one number; the edits of one slider drag share a merge key.
* ``ParamField``: the editor of one ``Param`` (numbers and ranges, choices, bools, sizes as H and W, fills,
  text and paths); emits ``changed(value, merge_key)``.
* ``ParamForm``: a form with one ``ParamField`` per declared parameter, keeping the current values.
"""

from __future__ import annotations

import functools
import itertools

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

_merge_ids = itertools.count(1)


class FineSlider(QSlider):
    """A horizontal slider; with Shift held while dragging it moves at a tenth of the speed."""

    FINE = 10

    def __init__(self, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self._anchor: tuple[float, int] | None = None

    def mousePressEvent(self, e):  # noqa: N802
        super().mousePressEvent(e)
        self._anchor = (e.position().x(), self.value())

    def mouseMoveEvent(self, e):  # noqa: N802
        if self.isSliderDown() and self._anchor is not None and e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            x0, v0 = self._anchor
            groove = max(1, self.width() - 16)
            dv = (e.position().x() - x0) / groove * (self.maximum() - self.minimum()) / self.FINE
            self.setSliderPosition(int(round(min(self.maximum(), max(self.minimum(), v0 + dv)))))
            e.accept()
            return
        self._anchor = (e.position().x(), self.value())  # pressing Shift later does not jump
        super().mouseMoveEvent(e)

    def mouseReleaseEvent(self, e):  # noqa: N802
        self._anchor = None
        super().mouseReleaseEvent(e)


class NumberField(QWidget):
    """Slider + spin box for one number; emits (value, merge_key). A slider drag shares one merge key.

    The slider covers ``span`` (the parameter's typical values, ``Param.slider_range()``), in 1000 steps;
    the spin box takes any value of the legal range [low, high] (a typed value outside the span moves the
    handle to the end). Shift+drag moves the slider ten times finer; the arrow keys step by 1/1000 of the
    span."""

    changed = Signal(object, object)
    STEPS = 1000

    def __init__(self, low, high, integer: bool, value, parent=None, span=None):
        super().__init__(parent)
        self.integer = integer
        self.low, self.high = low, high
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.spin = QSpinBox() if integer else QDoubleSpinBox()
        self.spin.setKeyboardTracking(False)
        lo = -1e9 if low is None else low
        hi = 1e9 if high is None else high
        if span is None and low is not None and high is not None:
            span = (low, high)
        self.span = (float(span[0]), float(span[1])) if span is not None and span[1] > span[0] else None
        s_lo, s_hi = self.span if self.span is not None else (lo, hi)
        if integer:
            self.spin.setRange(int(max(lo, -2**31 + 1)), int(min(hi, 2**31 - 1)))
        else:
            self.spin.setDecimals(4 if (s_hi - s_lo) <= 2 else 3)
            self.spin.setRange(lo, hi)
            self.spin.setSingleStep(nice_step(s_lo, s_hi))
        self.spin.setMinimumWidth(70)
        self.slider = None
        if self.span is not None:
            self.slider = FineSlider()
            n = int(s_hi - s_lo) if integer and s_hi - s_lo <= self.STEPS else self.STEPS
            self.slider.setRange(0, n)
            self.slider.setPageStep(max(1, n // 20))
            self.slider.setToolTip(f"slider: typical values {_num(s_lo)} .. {_num(s_hi)}; type any value "
                                   f"within {_num(lo)} .. {_num(hi)}; Shift+drag for fine steps")
            self.slider.sliderPressed.connect(self._press)
            self.slider.valueChanged.connect(self._slide)
            lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        self._key = None
        self.set_value(value)
        self.spin.valueChanged.connect(self._spun)

    def _to_slider(self, v) -> int:
        lo, hi = self.span
        n = self.slider.maximum()
        return int(round(min(n, max(0, (v - lo) / (hi - lo) * n))))

    def _from_slider(self, s: int):
        lo, hi = self.span
        v = lo + (hi - lo) * s / self.slider.maximum()
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


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def nice_step(lo, hi) -> float:
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
        span = param.slider_range() if k in ("float", "int", "range", "int_range") else None
        if k in ("float", "int"):
            w = NumberField(param.low, param.high, k == "int", value, span=span)
            w.changed.connect(self.changed)
            self.parts = [w]
            lay.addWidget(w)
        elif k in ("range", "int_range"):
            a, b = value if isinstance(value, (list, tuple)) else (value, value)
            for i, v in enumerate((a, b)):
                w = NumberField(param.low, param.high, k == "int_range", v, span=span)
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
        elif k == "size":  # [height, width], as in the recipe
            row = QHBoxLayout()
            for side, v in zip(("H", "W"), value or [1, 1]):
                s = QSpinBox()
                s.setRange(1, 65536)
                s.setKeyboardTracking(False)
                s.setValue(int(v))
                s.setSuffix(" px")
                s.setToolTip("height (rows)" if side == "H" else "width (columns)")
                s.valueChanged.connect(lambda _v: self.changed.emit([p.value() for p in self.parts], None))
                self.parts.append(s)
                lab = QLabel(side)
                lab.setObjectName("dim")
                row.addWidget(lab)
                row.addWidget(s, 1)
            lay.addLayout(row)
        elif k in ("fill", "str", "path"):
            w = QLineEdit(fmt_value(value))
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
                self.parts[0].setText(fmt_value(value))
        finally:
            for p in self.parts:
                p.blockSignals(False)

    def dragging(self) -> bool:
        return any(isinstance(p, NumberField) and p.dragging() for p in self.parts)


def fmt_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


class ParamForm(QWidget):
    """One ``ParamField`` per declared parameter (label = its name, tooltip = its help). ``values`` holds the
    current values (the given ones, else the declared defaults); ``changed(name, value, merge_key)``
    reports each edit. The values are not validated here: the op does that when it is built."""

    changed = Signal(str, object, object)

    def __init__(self, params, values: dict | None = None, parent=None):
        super().__init__(parent)
        values = values or {}
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 4, 0, 0)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.values: dict = {}
        self.fields: dict[str, ParamField] = {}
        for p in params:
            value = values.get(p.name, p.default if p.default is None else p.validate(p.default))
            self.values[p.name] = value
            field = ParamField(p, value)
            field.changed.connect(functools.partial(self._changed, p.name))
            label = QLabel(p.name)
            label.setToolTip(p.help)
            self.form.addRow(label, field)
            self.fields[p.name] = field

    def _changed(self, name: str, value, merge_key) -> None:
        self.values[name] = value
        self.changed.emit(name, value, merge_key)

    def set_value(self, name: str, value) -> None:
        """Show ``value`` (no ``changed``); a field whose slider is being dragged keeps what it shows."""
        self.values[name] = value
        if not self.fields[name].dragging():
            self.fields[name].set_value(value)
