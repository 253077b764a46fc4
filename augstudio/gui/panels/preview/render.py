"""What the preview shows, computed off the GUI thread and without Qt widgets: the recipe run on a picture for
some copies (``render``) or step by step (``render_steps``), with the targets moved by the same records, as
display arrays; plus a small cache of decoded pictures and the text of drawn parameters."""

from __future__ import annotations

import json
import threading
import time

from augstudio.core.base.errors import AugstudioError
from augstudio.core.base.targets import normalize_targets
from augstudio.core.engine.recipe import note_lost
from augstudio.core.io.images import read_image
from augstudio.gui.qt.images import display_array
from augstudio.gui.widgets.target_overlay import overlay_data


class PictureCache:
    """The last few decoded source pictures (thread-safe)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._d: dict = {}
        self._lock = threading.Lock()

    def get(self, path):
        key = str(path)
        with self._lock:
            pic = self._d.get(key)
        if pic is None:
            pic = read_image(path)
            with self._lock:
                self._d[key] = pic
                while len(self._d) > self.size:
                    self._d.pop(next(iter(self._d)))
        return pic


def render(pic, recipe, item_key, copies, token=None, targets=None, classes=()) -> dict:
    """Run the recipe on ``pic`` for each copy index; returns display arrays and step records. With
    ``targets`` (canonical, for ``pic``) also what to draw over the original and each copy ("overlays"),
    moved with the copy's own records; a step that cannot carry targets leaves them out ("targets_note")."""
    t0 = time.perf_counter()
    pipe = recipe.pipeline()
    outs, overlays, note = [], [], ""
    ignore = recipe.targets.ignore_index
    if targets is not None:
        try:
            targets = normalize_targets(targets, pic.size)
        except AugstudioError as e:
            targets, note = None, f"targets not shown: {e}"
    original = overlay_data(targets, classes, ignore)
    try:
        if targets is not None:
            pipe.check_targets()
    except AugstudioError as e:  # AugMix: the pixels still show, without targets
        head = str(e).split(" cannot carry")[0]
        targets, note = None, f"targets not shown: {head} cannot carry masks, boxes or keypoints"
    for c in copies:
        if token is not None:
            token.check()
        out, records = pipe.run(pic, recipe.seed, item_key, c)
        outs.append((c, display_array(out), records, out.size))
        if targets is not None:  # the same records as the pixels: what Recipe.apply(targets=) does
            log: list = []
            try:
                moved = pipe.replay_targets(targets, records, pic.kind, pic.size, recipe.targets, log=log)
            except AugstudioError as e:
                targets, note = None, f"targets not shown: {e}"
                continue
            note_lost(records, log)
            overlays.append(overlay_data(moved, classes, ignore))
    return {"original": display_array(pic), "outputs": outs, "size": pic.size,
            "ms": (time.perf_counter() - t0) * 1000.0, "targets_note": note,
            "original_overlay": original, "overlays": overlays if targets is not None else [None] * len(outs),
            "targets": targets}  # canonical, or None where none are shown


def render_steps(pic, recipe, item_key, copy, token=None, targets=None, classes=()) -> dict:
    """``render`` for one copy, plus the picture after each step: the steps replayed one by one from the
    copy's records (``Pipeline.replay(..., fuse=False)``), so each frame shows what that step did. The last
    frame can differ by a grey level from the fused result, which resamples consecutive geometric steps
    once. With targets, each frame also gets them as moved up to that step ("frame_overlays"), what a box
    or keypoint does at each step; what was lost is in the records."""
    res = render(pic, recipe, item_key, [copy], token, targets, classes)
    records = res["outputs"][0][2]
    pipe_cls = type(recipe.pipeline())
    frames, overlays = [(None, res["original"], pic.size)], [res["original_overlay"]]
    cur = pic
    moved = res["targets"]
    for step, rec in zip(recipe.steps, records):
        if token is not None:
            token.check()
        if rec["applied"]:
            one = pipe_cls([step])
            if moved is not None:  # the record's own draws, one step at a time like the pixels below
                moved = one.replay_targets(moved, [rec], cur.kind, cur.size, recipe.targets, fuse=False)
            cur = one.replay(cur, [rec], fuse=False)
        frames.append((rec, display_array(cur), cur.size))
        overlays.append(overlay_data(moved, classes, recipe.targets.ignore_index))
    res["frames"], res["frame_overlays"] = frames, overlays
    return res


def fmt_size(size) -> str:
    """A picture's (height, width) as the user reads it, unambiguously: W 128 × H 96."""
    h, w = size
    return f"W {w} × H {h}"


def records_text(params) -> str:
    if params is None:
        return ""
    return json.dumps(params, separators=(", ", ": "), default=str)


def short_params(params, limit: int = 60) -> str:
    text = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in (params or {}).items()
                     if not isinstance(v, (list, dict)))
    return text if len(text) <= limit else text[: limit - 1] + "…"
