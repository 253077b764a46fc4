"""The undoable edits of the chain: each is a ``QUndoCommand`` on the controller's stack; the edits of one
slider drag share a merge key and merge into one undo step."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from augstudio.core.ops.step import Step
from augstudio.gui.panels.chain.model import ChainModel


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
