"""Quitting, in a real process: with an export and a style job running, closing the window asks first
(answered by $AUGSTUDIO_QUIT_ANSWER), then the process is gone within 2 s with nothing on stderr; Ctrl+Q
with no jobs ends it within 1 s. The app runs as the CLI runs it (``run_app(..., exit_process=True)``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

SCRIPT = textwrap.dedent(r"""
    import os, sys, time
    from pathlib import Path
    from PySide6.QtCore import QTimer, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from augstudio.gui.shell import app as app_mod
    from augstudio.gui.shell.main_window import MainWindow

    if __name__ == "__main__":
        mode, samples, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    state = {"started": False}

    def window():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        return wins[0] if wins else None

    def say(*words):
        print(*words, flush=True)

    def poll():
        win = window()
        if win is None or not win.ctx.is_torch_ready() or win.preview is None or not win.preview.renders:
            QTimer.singleShot(50, poll)
            return
        if mode == "idle":
            win.activateWindow()
            QTest.qWaitForWindowActive(win, 2000)
            say("CLOSE", time.time())
            QTest.keyClick(win, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
            if win.isVisible():  # the platform did not route the key to the shortcut: use its action
                say("SHORTCUT", win.act_quit.shortcut().toString())
                win.act_quit.trigger()
            return
        if not state["started"]:
            from augstudio.core.engine.recipe import load_recipe
            from augstudio.gui.panels.jobs import start_export
            state["export"] = start_export(win.ctx, samples / "shapes", load_recipe(
                samples.parent / "recipes" / "sample.yaml"), out / "export", copies=200, workers=2)
            win.tabs.setCurrentIndex(3)  # Style
            host = win.tabs.widget(3)
            host.build()
            panel = host.panel
            panel.set_method("texture")
            panel.style.edit.setText(str(sorted((samples / "shapes").glob("*/*.*"))[0]))
            panel.size.setValue(256)
            panel.iterations.setValue(200)
            state["style"] = panel.start()
            state["started"] = True
            QTimer.singleShot(1500, poll)
            return
        jobs = [j for j in win.ctx.running_jobs() if not j.background]
        say("RUNNING", len(jobs), *(j.title.replace(" ", "_") for j in jobs))
        say("CLOSE", time.time())
        win.close()  # the prompt is answered by $AUGSTUDIO_QUIT_ANSWER

    if __name__ == "__main__":  # export workers (forkserver) import this module too
        app_mod.get_app()  # the timer needs the application's event loop
        QTimer.singleShot(50, poll)
        app_mod.run_app(str(samples), exit_process=True)
        say("NOT EXITED")  # run_app with exit_process never returns
""")


def run(mode, samples_root, tmp_path, answer="yes"):
    """Run the app; returns (exit code, stdout lines, stderr, seconds from the close to the process's end,
    seconds until every process it started (export workers) had let go of its output)."""
    env = dict(os.environ, AUGSTUDIO_SETTINGS_DIR=str(tmp_path / "settings"), AUGSTUDIO_QUIT_ANSWER=answer,
               QT_QPA_PLATFORM="offscreen")
    if env.get("ATEN_CPU_CAPABILITY") == "":  # torch warns on stderr about the empty value; unset is the same
        del env["ATEN_CPU_CAPABILITY"]
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, str(samples_root), str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(x.strip() for x in p.stdout), daemon=True),
               threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)]
    for t in readers:
        t.start()
    deadline = time.time() + 180
    while p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    ended = time.time()
    for t in readers:  # the pipes close when the last process holding them (a worker) is gone
        t.join(timeout=60)
    all_gone = time.time()
    close_at = next((float(x.split()[1]) for x in lines if x.startswith("CLOSE")), None)
    took = ended - close_at if close_at else None
    return p.returncode, lines, "".join(err), took, all_gone - close_at if close_at else None


def test_closing_with_jobs_running_asks_then_exits_within_2s(samples_root, tmp_path):
    code, lines, err, took, all_gone = run("jobs", samples_root, tmp_path)
    running = next(line for line in lines if line.startswith("RUNNING"))
    assert "Export" in running and "style:_texture" in running, lines
    assert code == 0, (lines, err)
    assert "NOT EXITED" not in lines
    assert err.strip() == "", err
    assert took is not None and took < 2.0, f"the process took {took:.2f} s to end after the window closed"
    # the export's worker processes follow it (they watch for their parent; a pool that was still
    # starting first finishes importing torch)
    assert all_gone < 30.0, f"worker processes lived {all_gone:.1f} s after the window closed"
    print(f"closed with jobs running: the app ended {took:.2f} s later, its workers {all_gone:.2f} s later")


def test_ctrl_q_with_no_jobs_exits_within_1s(samples_root, tmp_path):
    code, lines, err, took, _ = run("idle", samples_root, tmp_path)
    assert code == 0 and err.strip() == "", err
    assert not any(line.startswith("SHORTCUT") for line in lines), lines  # Ctrl+Q itself closed it
    assert took is not None and took < 1.0, f"the process took {took:.2f} s to end after Ctrl+Q"
    print(f"Ctrl+Q with no jobs: the app ended {took:.2f} s later")
