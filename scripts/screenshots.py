"""Make the README screenshots from the app itself (offscreen):

    python scripts/screenshots.py [--out docs/screenshots]

main.png  browser + chain editor + preview on the bundled shapes samples with the example recipe
grid.png  the sample grid: 12 draws of the wafer recipe for one wafer map, with their copy indices
jobs.png  the Jobs panel: a finished export, a cancelled one, and one running with its ETA
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
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import Qt

    from augstudio.core.engine.recipe import load_recipe
    from augstudio.core.io.samples import samples_dir
    from augstudio.gui.panels.jobs import start_export
    from augstudio.gui.shell.app import create_window, get_app

    app = get_app()
    win = create_window(samples_dir() / "shapes")
    win.resize(1440, 900)
    win.ask_unsaved = lambda: None

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
    win.grab().save(str(out / "main.png"))

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
    for p in ("main.png", "grid.png", "jobs.png"):
        print(out / p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
