"""Make the README screenshots from the app itself (offscreen), at a 1280 x 800 screen:

    python scripts/screenshots.py [--out docs/screenshots] [--size 1280x800] [--only targets]

main.png   browser + chain editor + preview on the bundled shapes samples with the example recipe
grid.png   the sample grid: 12 draws of the wafer recipe for one wafer map, with their copy indices
steps.png  the steps view: the image after each step of the chain
mix.png    the Mix tab: PuzzleMix of two shapes (saliency, mask, transport, the mix and its label)
jobs.png   the Jobs panel: a finished export, a cancelled one, and one running with its ETA
targets.png the shapes' COCO masks, boxes and keypoints drawn over the original and the augmented image
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["AUGSTUDIO_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="augstudio-shots-")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "screenshots"))
    ap.add_argument("--size", default="1280x800", help="the screen the window fits (WIDTHxHEIGHT)")
    ap.add_argument("--only", choices=["targets"], help="make this one screenshot only")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sw, sh = (int(v) for v in args.size.lower().split("x"))

    from PySide6.QtCore import QRect, Qt

    from augstudio.core.engine.recipe import load_recipe
    from augstudio.core.io.samples import samples_dir
    from augstudio.gui.panels.jobs import start_export
    from augstudio.gui.shell.app import create_window, get_app
    from augstudio.gui.shell.main_window import MainWindow

    # the offscreen platform's screen is 800 x 800: the window fits the screen size asked for instead
    MainWindow.available_geometry = lambda self: QRect(0, 0, sw, sh)
    app = get_app()
    win = create_window(samples_dir() / "shapes")
    win.resize(sw, sh)
    win.ask_unsaved = lambda: None
    win.ask_quit = lambda jobs: True

    def spin(seconds, until=None):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            if until is not None and until():
                return True
            time.sleep(0.01)
        return False

    assert spin(60, lambda: win.ctx.is_torch_ready() and win.preview.renders > 0), "preview never rendered"
    b = win.browser
    b.view.setCurrentIndex(b.model.index(5))  # a circle on a striped background
    spin(1.5, lambda: b.loader.pending() == 0)
    win.chain.steps.setCurrentIndex(win.chain.steps_model.index(1))  # rotate: its editor shows
    spin(1.0)
    for _ in range(3):  # warm: the status bar then shows a steady preview time, not the first call's
        n = win.preview.renders
        win.preview.request()
        spin(5, lambda n=n: win.preview.renders > n)
    if args.only == "targets":
        targets_shot(win, spin, out)
        win._closing = True
        win.close()
        print(out / "targets.png")
        return 0
    win.grab().save(str(out / "main.png"))
    targets_shot(win, spin, out)

    # the steps view: the same image after each step
    win.preview.set_steps_mode(True)
    spin(10, lambda: win.preview.last_result is not None and "frames" in win.preview.last_result)
    spin(0.5)
    win.preview.fit()
    spin(0.3)
    win.grab().save(str(out / "steps.png"))
    win.preview.set_steps_mode(False)

    # the Mix tab: PuzzleMix of a circle and a star
    win.tabs.setCurrentIndex(2)
    host = win.tabs.widget(2)
    spin(10, lambda: host.panel is not None)
    mix = host.panel
    shapes = samples_dir() / "shapes"
    a = sorted((shapes / "circle").glob("*.*"))[2]
    bpath = sorted((shapes / "star").glob("*.*"))[1]
    mix.set_pair(a, bpath)
    spin(60, lambda: mix.last_result is not None and not mix.runner.busy())
    for _ in range(8):  # a draw where both images show (lambda well inside 0..1)
        if 0.25 <= mix.last_result["weights"][0] <= 0.75:
            break
        done = mix.last_result
        mix.reroll()
        spin(60, lambda done=done: mix.last_result is not done and not mix.runner.busy())
    spin(0.5)
    win.grab().save(str(out / "mix.png"))
    win.tabs.setCurrentIndex(0)

    # the sample grid on a wafer map
    win.open_folder(samples_dir() / "wafers")
    win.open_recipe(samples_dir().parent / "recipes" / "wafer.yaml", remember=False)
    ds = win.ctx.dataset()
    donut = next(i for i, it in enumerate(b.model.items) if it.class_name == "Donut")
    b.sidebar.select_class("Donut")
    b.view.setCurrentIndex(b.model.index(b.model.row_of(ds.items[donut].path)))
    win.preview.n_spin.setValue(12)
    win.preview.set_grid_mode(True)
    spin(3, lambda: win.preview.last_result is not None and win.preview.last_result["grid"]
         and len(win.preview.last_result["outputs"]) == 12)
    spin(1.5, lambda: b.loader.pending() == 0)
    n = win.preview.renders
    win.preview.request()
    spin(5, lambda: win.preview.renders > n)
    spin(0.5)
    win.grab().save(str(out / "grid.png"))

    # jobs: an export that finished, a job still running, a cancelled one
    win.preview.set_grid_mode(False)
    tmp = Path(tempfile.mkdtemp(prefix="augstudio-shots-export-"))
    h = start_export(win.ctx, samples_dir() / "wafers", win.ctx.recipe(), tmp / "wafers_aug", copies=2)
    spin(120, lambda: not h.is_running())

    # a long export that the user cancelled, and one still running (real jobs, their real rows)
    c = start_export(win.ctx, samples_dir() / "shapes", load_recipe(samples_dir().parent / "recipes" / "sample.yaml"),
                     tmp / "shapes_aug_first_try", copies=10)
    spin(30, lambda: c.last is not None and c.last.done >= 8)
    c.cancel()
    spin(10, lambda: not c.is_running())
    r = start_export(win.ctx, samples_dir() / "shapes", load_recipe(samples_dir().parent / "recipes" / "sample.yaml"),
                     tmp / "shapes_aug", copies=40)
    spin(30, lambda: r.last is not None and r.last.done >= 20)
    win.resizeDocks([win.jobs_dock], [260], Qt.Orientation.Vertical)
    spin(0.5)
    win.grab().save(str(out / "jobs.png"))
    r.cancel()
    win._closing = True
    win.close()
    for p in ("main.png", "targets.png", "grid.png", "steps.png", "mix.png", "jobs.png"):
        print(out / p)
    return 0


def targets_shot(win, spin, out: Path) -> None:
    """The shapes with the sample recipe, masks + boxes + keypoints on (the bundled COCO annotations)."""
    pv = win.preview
    for act in pv.kind_actions.values():
        act.setChecked(True)
    b = win.browser
    b.view.setCurrentIndex(b.model.index(b.model.row_of("square/square_013.jpg")))  # a square: four vertex keypoints
    spin(10, lambda: pv.last_result is not None and pv.last_result["path"].endswith("square_013.jpg"))
    spin(1.5, lambda: b.loader.pending() == 0)
    assert pv.last_result["has_targets"] and pv.last_result["overlays"][0], "no targets drawn"
    spin(0.5)
    win.grab().save(str(out / "targets.png"))


if __name__ == "__main__":
    sys.exit(main())
