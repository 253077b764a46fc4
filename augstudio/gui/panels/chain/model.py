"""The chain being edited, as plain Python (no Qt): ordered steps with change notifications.

The Qt list model (``steps.StepListModel``), the step editor and the controller listen to it; undo
commands (``commands``) call its methods. ``with_param`` builds a validated copy of a step with one
parameter changed, so refusals never reach the list.
"""

from __future__ import annotations

from collections.abc import Callable

from augstudio.core.ops.step import Step, parse_step


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

    def with_param(self, row: int, name: str, value) -> Step | None:
        """A validated copy of step ``row`` with parameter ``name`` set to ``value``, or None when that changes
        nothing. Raises ParamError / RecipeError naming the step and the parameter when the op refuses it."""
        cur = self.steps[row]
        raw = cur.to_dict()
        raw[name] = value
        new = parse_step(raw, f"step {row + 1} ")
        return None if new.to_dict() == cur.to_dict() else new

    def reset(self, steps: list[Step]) -> None:
        self._emit("before", "reset")
        self.steps = list(steps)
        self._emit("after", "reset")
