"""The analysis tabs: each panel is imported and built only when its tab is first shown after torch is
ready (the window and the browser come up without torch); a panel that cannot be imported or built shows
why instead of breaking the app, and its traceback goes to the log.

A panel sits in a scroll area: a tab's page never makes the window wider or taller than the screen (a
QTabWidget is as large as its largest page); a panel wider than the room it gets scrolls instead."""

from __future__ import annotations

import importlib
import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from augstudio.gui.qt.workers import error_message

log = logging.getLogger(__name__)

PANELS = [
    ("Saliency", "augstudio.gui.panels.saliency:SaliencyPanel"),
    ("Mix", "augstudio.gui.panels.mix:MixPanel"),
    ("Style", "augstudio.gui.panels.style:StylePanel"),
    ("TTA", "augstudio.gui.panels.tta:TTAPanel"),
    ("Evaluate", "augstudio.gui.panels.evaluate:EvaluatePanel"),
]


class PanelHost(QWidget):
    def __init__(self, ctx, title: str, target: str, parent=None):
        super().__init__(parent)
        self.ctx, self.title, self.target = ctx, title, target
        self.panel: QWidget | None = None
        self.error: str | None = None
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.note = QLabel(f"{title} loads once the augmentation engine (torch) is ready…")
        self.note.setObjectName("previewMessage")
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.lay.addWidget(self.note)

    def build(self) -> None:
        if self.panel is not None or self.error is not None or not self.ctx.is_torch_ready():
            return
        mod_name, _, cls_name = self.target.partition(":")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
            self.panel = cls(self.ctx, self)
        except ModuleNotFoundError as e:
            log.error("the %s panel could not be imported", self.title, exc_info=e)
            if e.name == mod_name:
                self.error = f"The {self.title} panel is not available in this build ({mod_name} is missing)."
            else:
                self.error = f"The {self.title} panel could not be loaded: {e}"
        except Exception as e:  # noqa: BLE001 - a broken panel must not break the app
            log.error("the %s panel failed to start", self.title, exc_info=e)
            self.error = f"The {self.title} panel failed to start: {error_message(e)}"
        if self.panel is not None:
            self.note.hide()
            self.scroll = QScrollArea()
            self.scroll.setObjectName("panelScroll")
            self.scroll.setWidgetResizable(True)
            self.scroll.setFrameShape(QFrame.Shape.NoFrame)
            self.scroll.setWidget(self.panel)
            self.lay.addWidget(self.scroll)
        else:
            self.note.setText(self.error)
            self.note.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
