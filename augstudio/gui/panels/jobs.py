"""The Jobs panel (every long job with progress, ETA, cancel and its result) and the Export dialog.

A running job's row counts the seconds even before its first progress report and says what it is doing;
a finished export offers to open its output folder. Rows of superseded latest-wins tasks (a saliency map
or a mix replaced by a newer request) leave the list by themselves."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.core.io.outputs import check_output_folder
from augstudio.gui.qt.workers import CANCELLED, DONE, FAILED, JobHandle


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


class JobRow(QFrame):
    def __init__(self, handle: JobHandle, parent=None):
        super().__init__(parent)
        self.handle = handle
        self.setObjectName("jobRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"<b>{handle.title}</b>")
        self.state = QLabel("running")
        self.state.setObjectName("jobState")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.bar.setTextVisible(True)
        self.eta = QLabel("ETA –")
        self.eta.setObjectName("dim")
        self.eta.setMinimumWidth(120)
        self.bar.setMinimumWidth(80)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._cancel)
        self.open_btn = QPushButton("Open folder")
        self.open_btn.setToolTip("open the output folder in the file manager")
        self.open_btn.clicked.connect(self.open_output)
        self.open_btn.hide()
        self.message = QLabel(handle.message or "starting…")
        self.message.setObjectName("dim")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # two lines per job (title, bar, ETA, state and buttons; then its message): several rows fit
        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.bar, 1)
        top.addWidget(self.eta)
        top.addWidget(self.state)
        top.addWidget(self.cancel_btn)
        top.addWidget(self.open_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.message)
        handle.progress.connect(self._progress)
        handle.state_changed.connect(self._state)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._tick_elapsed)
        if handle.is_running():
            self._tick.start()

    def _tick_elapsed(self) -> None:
        """Before the first report (and between slow ones) the row still shows that time passes."""
        h = self.handle
        if not h.is_running():
            self._tick.stop()
            return
        if self.cancel_btn.isEnabled():
            self.eta.setText(f"ETA {fmt_seconds(h.eta())} · {fmt_seconds(h.elapsed())} so far")
        else:
            self.eta.setText(f"stopping · {fmt_seconds(h.elapsed())}")

    def _cancel(self) -> None:
        self.handle.cancel()
        self.cancel_btn.setEnabled(False)
        self.state.setText("cancelling…")
        self.message.setText("stopping at the next step (a long step, such as a style iteration, ends first)")

    def open_output(self) -> bool:
        out = self.handle.output_dir
        if out is None or not Path(out).is_dir():
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(out)))

    def _progress(self, p) -> None:
        if p.total:
            if self.bar.maximum() != p.total:
                self.bar.setRange(0, p.total)
            self.bar.setValue(p.done)
            self.bar.setFormat(f"{p.done} / {p.total}  (%p%)")
        eta = self.handle.eta()
        self.eta.setText(f"ETA {fmt_seconds(eta)} · {fmt_seconds(self.handle.elapsed())} so far")
        if p.message:
            self.message.setText(str(p.message)[-120:])

    def _state(self, state: str) -> None:
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.hide()
        h = self.handle
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
            self.bar.setValue(1 if state == DONE else 0)
        elif state == DONE:
            self.bar.setValue(self.bar.maximum())
        colors = {DONE: "#5cb85c", FAILED: "#e05d5d", CANCELLED: "#d9a441"}
        self.state.setText(f"<span style='color:{colors.get(state, '#ccc')}'>{state}</span>")
        self.eta.setText(f"took {fmt_seconds(h.elapsed())}")
        self.message.setText(h.message)
        self.setProperty("state", state)
        self._tick.stop()
        if h.output_dir is not None and Path(h.output_dir).is_dir() and state in (DONE, CANCELLED):
            self.open_btn.show()


class JobsPanel(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.rows: list[JobRow] = []
        self.host = QWidget()
        self.list = QVBoxLayout(self.host)
        self.list.setContentsMargins(0, 0, 0, 0)
        self.list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.host)
        self.empty = QLabel("No jobs yet. Export (Ctrl+E) and the analysis panels run their work here.")
        self.empty.setObjectName("dim")
        self.empty.setWordWrap(True)
        self.empty.setMinimumWidth(60)
        self.clear_btn = QToolButton()
        self.clear_btn.setText("Clear finished")
        self.clear_btn.clicked.connect(self.clear_finished)
        head = QHBoxLayout()
        head.addWidget(self.empty, 1)
        head.addWidget(self.clear_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(head)
        lay.addWidget(scroll, 1)
        ctx.job_started.connect(self.add_job)

    def add_job(self, handle: JobHandle) -> JobRow:
        row = JobRow(handle)
        self.list.insertWidget(0, row)
        self.rows.append(row)
        handle.ended.connect(self._count)
        if handle.background:
            handle.ended.connect(lambda r=row: self._drop_superseded(r))
        self._count()
        return row

    def _drop_superseded(self, row: JobRow) -> None:
        """A map or mix replaced by a newer request is no news: its row goes."""
        if row.handle.superseded and row in self.rows:
            self.rows.remove(row)
            row.setParent(None)
            row.deleteLater()
            self._count()

    def _count(self) -> None:
        running = sum(r.handle.is_running() for r in self.rows)
        n = len(self.rows)
        self.empty.setText(f"{n} job{'s' * (n != 1)}" + (f", {running} running" if running else "") if n
                           else "No jobs.")

    def row_for(self, handle: JobHandle) -> JobRow | None:
        return next((r for r in self.rows if r.handle is handle), None)

    def clear_finished(self) -> None:
        for r in list(self.rows):
            if not r.handle.is_running():
                self.rows.remove(r)
                r.setParent(None)
                r.deleteLater()
        self._count()


class ExportDialog(QDialog):
    """Out folder, copies, seed, format, workers; OK runs ``core.export.export_job`` as a job."""

    def __init__(self, ctx, src: Path, recipe, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export augmented dataset")
        self.ctx = ctx
        self.src = Path(src)
        self.recipe = recipe
        default_out = self.src.parent / f"{self.src.name}_augmented"
        self.out = QLineEdit(str(default_out))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        self.copies = QSpinBox()
        self.copies.setRange(1, 1000)
        self.copies.setValue(2)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(recipe.seed) if recipe.seed < 2**31 else 0)
        self.fmt = QComboBox()
        self.fmt.addItems(["png", "jpg", "same"])
        self.workers = QSpinBox()
        self.workers.setRange(1, max(1, os.cpu_count() or 1))
        self.workers.setValue(1)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Source", QLabel(str(self.src)))
        form.addRow("Output folder", out_row)
        form.addRow("Copies per image", self.copies)
        form.addRow("Seed", self.seed)
        form.addRow("Format", self.fmt)
        form.addRow("Workers", self.workers)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.handle: JobHandle | None = None

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Output folder", self.out.text())
        if d:
            self.out.setText(d)

    def options(self) -> dict:
        return {"out": Path(self.out.text()), "copies": self.copies.value(), "seed": self.seed.value(),
                "fmt": self.fmt.currentText(), "workers": self.workers.value()}

    def accept(self) -> None:
        o = self.options()
        if not self.out.text().strip():
            self.error.setText("Choose an output folder.")
            return
        try:
            check_output_folder(self.src, o["out"])
        except AugstudioError as e:
            self.error.setText(str(e))
            return
        self.handle = start_export(self.ctx, self.src, self.recipe, **o)
        super().accept()


def start_export(ctx, src, recipe, out, copies=1, seed=None, fmt="png", workers=1) -> JobHandle:
    from augstudio.core.workflows.export import export_job  # deferred: torch (the jobs panel is up before it)

    rec = recipe.copy()

    def make(token):
        return export_job(src, rec, out, copies=copies, seed=seed, workers=workers, fmt=fmt, cancel=token)

    handle = ctx.run_job(f"Export → {Path(out).name}  ({copies} cop{'ies' if copies != 1 else 'y'})", make)
    handle.output_dir = Path(out)
    return handle
