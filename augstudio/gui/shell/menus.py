"""The main window's menus: File (folders, recipes, export, quit), Edit (undo, copy as code), View (preview
modes, zoom, every dock and analysis tab shown or hidden, reset layout) and Device."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence


def build_menus(win) -> None:
    mb = win.menuBar()
    f = mb.addMenu("&File")
    win.act_open = QAction("&Open folder…", win, shortcut=QKeySequence.StandardKey.Open)
    win.act_open.triggered.connect(win.choose_folder)
    f.addAction(win.act_open)
    win.recent_menu = f.addMenu("Recent folders")
    win.recent_menu.aboutToShow.connect(win._fill_recent)
    f.addSeparator()
    win.act_open_recipe = QAction("Open &recipe…", win, shortcut="Ctrl+Shift+O")
    win.act_open_recipe.triggered.connect(win.choose_recipe)
    f.addAction(win.act_open_recipe)
    win.recent_recipes_menu = f.addMenu("Recent recipes")
    win.recent_recipes_menu.aboutToShow.connect(win._fill_recent_recipes)
    win.act_save = QAction("&Save recipe", win, shortcut=QKeySequence.StandardKey.Save)
    win.act_save.triggered.connect(win.save_recipe)
    f.addAction(win.act_save)
    win.act_save_as = QAction("Save recipe &as…", win, shortcut=QKeySequence.StandardKey.SaveAs)
    win.act_save_as.triggered.connect(lambda: win.save_recipe(ask=True))
    f.addAction(win.act_save_as)
    f.addSeparator()
    win.act_export = QAction("&Export augmented dataset…", win, shortcut="Ctrl+E")
    win.act_export.triggered.connect(win.show_export)
    win.act_export.setEnabled(False)
    f.addAction(win.act_export)
    f.addSeparator()
    win.act_quit = QAction("&Quit", win)
    keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)  # empty on some Linux desktops
    if QKeySequence("Ctrl+Q") not in keys:
        keys.append(QKeySequence("Ctrl+Q"))
    win.act_quit.setShortcuts(keys)
    win.act_quit.triggered.connect(win.close)
    f.addAction(win.act_quit)

    e = mb.addMenu("&Edit")
    for a in win.chain.actions_for_menu():
        e.addAction(a)
        win.addAction(a)
    e.addSeparator()
    e.addAction(win.chain.copy_code_action)

    v = mb.addMenu("&View")
    win.grid_action = QAction("Sample &grid", win, checkable=True, shortcut="Ctrl+G")
    win.grid_action.setToolTip("N samples of the chain for the shown image")
    v.addAction(win.grid_action)
    win.steps_action = QAction("&Steps (the image after each step)", win, checkable=True, shortcut="Ctrl+T")
    v.addAction(win.steps_action)
    win.reroll_action = QAction("&Reroll", win, shortcut="Ctrl+R")
    v.addAction(win.reroll_action)
    win.fit_action = QAction("&Fit to view", win, shortcut="Ctrl+0")
    v.addAction(win.fit_action)
    win.actual_action = QAction("Actual size (&1:1)", win, shortcut="Ctrl+1")
    v.addAction(win.actual_action)
    v.addSeparator()
    panels = v.addMenu("&Panels")
    for dock in (win.browser_dock, win.chain_dock, win.jobs_dock):
        a = dock.toggleViewAction()
        a.setEnabled(True)
        panels.addAction(a)
    panels.addSeparator()
    win.tab_actions = {}
    for host in win.panel_hosts:
        a = QAction(f"{host.title} tab", win, checkable=True, checked=True)
        a.toggled.connect(lambda on, h=host: win.set_tab_shown(h, on))
        panels.addAction(a)
        win.tab_actions[host.title] = a
    win.reset_layout_action = QAction("Reset &layout", win)
    win.reset_layout_action.triggered.connect(win.reset_layout)
    v.addAction(win.reset_layout_action)

    d = mb.addMenu("&Device")
    win.device_actions = {}
    for key, label in (("auto", "Automatic (CUDA when available)"), ("cpu", "CPU"), ("cuda", "CUDA")):
        a = QAction(label, win, checkable=True)
        a.triggered.connect(lambda _c=False, k=key: win.set_device(k))
        d.addAction(a)
        win.device_actions[key] = a
    pref = win.settings.device()
    win.ctx.set_device(pref)
    win.device_actions.get(pref, win.device_actions["auto"]).setChecked(True)
