"""The chain's controller: the pure model, its undo stack and the recipe file; it publishes every edit
to the context as a ``Recipe`` (the preview re-renders from that)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from augstudio.core.base.errors import AugstudioError
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.ops.step import Step, parse_step
from augstudio.gui.panels.chain.commands import AddStep, MoveStep, RemoveStep, SetSeed, SetStep
from augstudio.gui.panels.chain.model import ChainModel


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
        self.targets = None  # the recipe's targets: options (min_visibility, ...), kept as loaded
        self.model.listeners.append(self._on_model)
        self.stack.cleanChanged.connect(self._clean_changed)

    def _clean_changed(self, _clean: bool) -> None:
        self.file_changed.emit()

    # recipe <-> model
    def recipe(self) -> Recipe:
        recipe = Recipe([s.copy() for s in self.model.steps], [s.copy() for s in self.batch], self.seed,
                        dict(self.extra), str(self.path) if self.path else None)
        if self.targets is not None:
            recipe.targets = self.targets
        return recipe

    def load(self, recipe: Recipe, path: Path | None = None) -> None:
        self.seed = recipe.seed
        self.batch = [s.copy() for s in recipe.batch]
        self.extra = dict(recipe.extra)
        self.targets = recipe.targets
        self.path = Path(path) if path else None
        self.model.reset([s.copy() for s in recipe.steps])
        self.stack.clear()
        self.stack.setClean()
        self.file_changed.emit()
        self._publish()

    def open(self, path) -> None:
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
        new = self.model.with_param(row, name, value)
        if new is not None:
            self.stack.push(SetStep(self.model, row, new, f"{self.model.steps[row].op}: {name}", merge_key))

    def set_seed(self, seed: int) -> None:
        if seed != self.seed:
            self.stack.push(SetSeed(self, self.seed, int(seed)))
