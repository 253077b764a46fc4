"""The main window: browser (left), preview and analysis panels (centre tabs), chain editor (right), jobs
(bottom); menus, recent lists, drag-and-drop of folders and recipes, status bar, a window that fits the
screen (``shell.layout``), and a quick shutdown that asks first while jobs run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from augstudio.core.base.errors import AugstudioError
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_header
from augstudio.core.io.samples import samples_dir
from augstudio.gui.panels.browser import BrowserWidget
from augstudio.gui.panels.chain.editor import ChainEditor
from augstudio.gui.panels.jobs import ExportDialog, JobsPanel
from augstudio.gui.qt.context import AppContext
from augstudio.gui.qt.settings import Settings
from augstudio.gui.qt.workers import error_message
from augstudio.gui.shell import layout
from augstudio.gui.shell.menus import build_menus
from augstudio.gui.shell.panel_host import PANELS, PanelHost

QUIT_ANSWER_ENV = "AUGSTUDIO_QUIT_ANSWER"  # "yes" / "no": answers the "jobs are running" prompt (tests)


def default_recipe_for(root: Path) -> Path | None:
    """The bundled example recipe when the bundled samples are opened."""
    try:
        samples = samples_dir().resolve()
        r = root.resolve()
    except OSError:
        return None
    if r == samples / "shapes" or r == samples:
        cand = samples.parent / "recipes" / "sample.yaml"
    elif r == samples / "wafers":
        cand = samples.parent / "recipes" / "wafer.yaml"
    else:
        return None
    return cand if cand.is_file() else None


class MainWindow(QMainWindow):
    dataset_opened = Signal(object)

    def __init__(self, ctx: AppContext | None = None, settings: Settings | None = None,
                 lazy_preview: bool = False):
        """``lazy_preview``: build the preview (and import pyqtgraph) only in ``ensure_preview()``, which
        the app calls right after the first paint, so the thumbnails show sooner."""
        super().__init__()
        self.ctx = ctx or AppContext(self)
        if settings is not None:
            self.ctx.settings = settings
        self.settings: Settings = self.ctx.settings
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._pending_recipe: Path | None = None
        self._closing = False
        self._fitted_once = False
        self.t_created = time.perf_counter()

        self.browser = BrowserWidget(self.ctx)
        self.chain = ChainEditor(self.ctx)
        self.preview = None
        self.preview_host = QWidget()
        QVBoxLayout(self.preview_host).setContentsMargins(0, 0, 0, 0)
        self.jobs = JobsPanel(self.ctx)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("centerTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.tabBar().setDrawBase(False)
        self.tabs.addTab(self.preview_host, "Preview")
        self.panel_hosts: list[PanelHost] = []
        for title, target in PANELS:
            host = PanelHost(self.ctx, title, target)
            self.panel_hosts.append(host)
            self.tabs.addTab(host, title)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)

        self.browser.setMinimumWidth(layout.MIN_DOCK_WIDTH["Browser"])
        self.chain.setMinimumWidth(layout.MIN_DOCK_WIDTH["Chain"])
        self.jobs.setMinimumHeight(layout.MIN_JOBS_HEIGHT)
        self.browser_dock = self._dock("Browser", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.chain_dock = self._dock("Chain", self.chain, Qt.DockWidgetArea.RightDockWidgetArea)
        self.jobs_dock = self._dock("Jobs", self.jobs, Qt.DockWidgetArea.BottomDockWidgetArea)

        self._status()
        build_menus(self)
        ctx = self.ctx
        ctx.dataset_changed.connect(lambda _d: self._update_title())
        ctx.current_item_changed.connect(self._item_changed)
        ctx.torch_ready.connect(self._torch_ready)
        ctx.torch_failed.connect(self._torch_failed)
        ctx.device_changed.connect(lambda _d: self.device_label.setText(ctx.device_name()))
        ctx.status_message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        ctx.job_started.connect(lambda h: h.background or self.jobs_dock.raise_())
        self.chain.ctrl.file_changed.connect(self._update_title)
        self.browser.bad_count_changed.connect(self._bad_count)
        self._restore_layout()
        self._update_title()
        if not lazy_preview:
            self.ensure_preview()

    def ensure_preview(self):
        if self.preview is None:
            from augstudio.gui.panels.preview import PreviewWidget  # deferred: pyqtgraph

            self.preview = PreviewWidget(self.ctx)
            self.preview_host.layout().addWidget(self.preview)
            self.grid_action.toggled.connect(self.preview.set_grid_mode)
            self.preview.mode_btn.toggled.connect(self.grid_action.setChecked)
            self.steps_action.toggled.connect(self.preview.set_steps_mode)
            self.preview.steps_btn.toggled.connect(self.steps_action.setChecked)
            self.reroll_action.triggered.connect(self.preview.reroll)
            self.fit_action.triggered.connect(self.preview.fit)
            self.actual_action.triggered.connect(self.preview.actual_size)
            self.preview.rendered.connect(self._rendered)
            if self.ctx.is_torch_ready():
                self.preview.request()
        return self.preview

    # -- building ------------------------------------------------------------------------------------
    def _dock(self, title, widget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock_{title}")
        d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                      | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                      | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, d)
        return d

    def _status(self) -> None:
        sb = self.statusBar()
        self.engine_label = QLabel("loading torch…")
        self.device_label = QLabel("CPU")
        self.size_label = QLabel("")
        self.time_label = QLabel("")
        self.bad_label = QLabel("")
        self.bad_label.hide()
        for w in (self.bad_label, self.engine_label, self.device_label, self.size_label, self.time_label):
            w.setObjectName("statusItem")
            sb.addPermanentWidget(w)

    # -- dataset -----------------------------------------------------------------------------------
    def folder_dialog_start(self) -> str:
        """Where "Open folder" starts: the open dataset's folder, else the last one opened."""
        ds = self.ctx.dataset()
        if ds is not None and Path(ds.root).is_dir():
            return str(ds.root)
        last = self.settings.last_folder()
        return last if last and Path(last).is_dir() else str(Path.home())

    def choose_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open dataset folder", self.folder_dialog_start())
        if d:
            self.open_folder(d)

    def open_folder(self, path) -> bool:
        path = Path(path)
        try:
            ds = scan(path)
        except AugstudioError as e:
            self.warn("Cannot open the folder", str(e))
            return False
        self.ctx.set_dataset(ds)
        self.settings.set_last_folder(str(path))
        self.act_export.setEnabled(self.ctx.is_torch_ready() and len(ds) > 0)
        rec = default_recipe_for(path)
        if rec is not None and not self.chain.ctrl.model.steps and self.chain.ctrl.path is None:
            self.open_recipe(rec, remember=False)
        msg = f"{len(ds)} images in {len(ds.classes)} classes" if len(ds) else f"{path.name}: no images found"
        if ds.problems:
            n = len(ds.problems)
            msg += f"; {n} unreadable file{'s' * (n != 1)} (marked ⚠ in the browser)"
        self.statusBar().showMessage(msg, 8000)
        self.dataset_opened.emit(ds)
        return True

    def _bad_count(self, n: int) -> None:
        self.bad_label.setText(f"⚠ {n} unreadable" if n else "")
        self.bad_label.setVisible(bool(n))
        self.bad_label.setToolTip("files that cannot be decoded; they carry a ⚠ mark in the browser, and "
                                  "their thumbnails' tooltips say why")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_folders():
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _c=False, p=p: self.open_folder(p))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _fill_recent_recipes(self) -> None:
        self.recent_recipes_menu.clear()
        for p in self.settings.recent_recipes():
            a = self.recent_recipes_menu.addAction(p)
            a.triggered.connect(lambda _c=False, p=p: self.open_recipe(p))
        if not self.recent_recipes_menu.actions():
            self.recent_recipes_menu.addAction("(none)").setEnabled(False)

    def _item_changed(self, item) -> None:
        if item is None:
            self.size_label.setText("")
            return
        try:
            w, h, mode = read_header(self.ctx.current_path())
            self.size_label.setText(f"{w}×{h} px (W×H) {mode}")
        except AugstudioError as e:
            self.size_label.setText("⚠ unreadable")
            self.statusBar().showMessage(str(e), 8000)

    # -- recipe ------------------------------------------------------------------------------------
    def choose_recipe(self) -> None:
        if not self.confirm_discard():
            return
        p, _ = QFileDialog.getOpenFileName(self, "Open recipe", "", "Recipes (*.yaml *.yml *.json)")
        if p:
            self.open_recipe(p)

    def open_recipe(self, path, remember: bool = True) -> bool:
        if not self.ctx.is_torch_ready():  # parsing needs the op registry
            self._pending_recipe = Path(path)
            return True
        try:
            self.chain.ctrl.open(path)
        except AugstudioError as e:
            self.warn("Cannot open the recipe", str(e))
            return False
        if remember:
            self.settings.add_recent_recipe(str(Path(path).resolve()))
        return True

    def save_recipe(self, ask: bool = False, path=None) -> bool:
        ctrl = self.chain.ctrl
        if path is None and (ask or ctrl.path is None or self._is_bundled(ctrl.path)):
            p, _ = QFileDialog.getSaveFileName(self, "Save recipe", str(ctrl.path or "recipe.yaml"),
                                               "YAML (*.yaml *.yml);;JSON (*.json)")
            if not p:
                return False
            path = p
        try:
            saved = ctrl.save(path)
        except (AugstudioError, OSError) as e:
            self.warn("Cannot save the recipe", str(e))
            return False
        self.settings.add_recent_recipe(str(saved.resolve()))
        self.statusBar().showMessage(f"saved {saved}", 5000)
        return True

    @staticmethod
    def _is_bundled(path: Path) -> bool:
        try:
            return path.resolve().parent == (samples_dir().parent / "recipes").resolve()
        except OSError:
            return False

    def confirm_discard(self) -> bool:
        """True when there are no unsaved changes or the user saved / discarded them."""
        if not self.chain.ctrl.dirty():
            return True
        ans = self.ask_unsaved()
        if ans == QMessageBox.StandardButton.Save:
            return self.save_recipe()
        return ans == QMessageBox.StandardButton.Discard

    def ask_unsaved(self):
        return QMessageBox.question(
            self, "Unsaved recipe", f"The recipe '{self.chain.ctrl.title()}' has unsaved changes.",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)

    def warn(self, title: str, text: str) -> None:
        self.statusBar().showMessage(text, 10000)
        QMessageBox.warning(self, title, text)

    def _update_title(self) -> None:
        ds = self.ctx.dataset()
        name = ds.root.name if ds is not None else "no dataset"
        self.setWindowTitle(f"{name} — {self.chain.ctrl.title()}[*] — augstudio")
        self.setWindowModified(self.chain.ctrl.dirty())

    # -- export ---------------------------------------------------------------------------------------
    def show_export(self) -> ExportDialog | None:
        ds = self.ctx.dataset()
        if ds is None or not self.ctx.is_torch_ready():
            return None
        dlg = ExportDialog(self.ctx, ds.root, self.ctx.recipe(), self)
        dlg.setModal(True)
        dlg.open()
        return dlg

    # -- torch / device ---------------------------------------------------------------------------
    def _torch_ready(self) -> None:
        secs = self.ctx.torch_load_seconds or 0
        self.engine_label.setText(f"augmentation ready ({secs:.1f} s)")
        self.device_label.setText(self.ctx.device_name())
        self.chain.enable()
        ds = self.ctx.dataset()
        self.act_export.setEnabled(ds is not None and len(ds) > 0)
        if self._pending_recipe is not None:
            p, self._pending_recipe = self._pending_recipe, None
            self.open_recipe(p, remember=False)
        self.statusBar().showMessage("augmentation engine ready", 4000)
        self._tab_changed(self.tabs.currentIndex())

    def _torch_failed(self, error: BaseException) -> None:
        self.engine_label.setText("⚠ torch failed to load")
        self.ensure_preview().show_message(f"The augmentation engine could not load: {error_message(error)}. "
                                           "Browsing still works; reinstall torch / torchvision (pip install -e .).")

    def set_device(self, key: str) -> None:
        for k, a in self.device_actions.items():
            a.setChecked(k == key)
        self.settings.set_device(key)
        self.ctx.set_device(key)
        self.device_label.setText(self.ctx.device_name())

    def _tab_changed(self, i: int) -> None:
        w = self.tabs.widget(i)
        if isinstance(w, PanelHost):
            w.build()
            QTimer.singleShot(0, self, self.fit_to_screen)

    def set_tab_shown(self, host: PanelHost, on: bool) -> None:
        """Show or hide an analysis tab (View > Panels); a hidden tab computes nothing."""
        i = self.tabs.indexOf(host)
        if i < 0 or self.tabs.isTabVisible(i) == on:
            return
        if not on and self.tabs.currentIndex() == i:
            self.tabs.setCurrentIndex(0)
        self.tabs.setTabVisible(i, on)
        if self.tab_actions[host.title].isChecked() != on:
            self.tab_actions[host.title].setChecked(on)
        self.settings.set_hidden_tabs([h.title for h in self.panel_hosts
                                       if not self.tabs.isTabVisible(self.tabs.indexOf(h))])

    def build_all_panels(self) -> None:
        for h in self.panel_hosts:
            h.build()

    def _rendered(self, info: dict) -> None:
        self.time_label.setText(f"preview {info['ms']:.1f} ms")

    # -- drag and drop -------------------------------------------------------------------------------
    def dragEnterEvent(self, e):  # noqa: N802
        urls = e.mimeData().urls() if e.mimeData().hasUrls() else []
        if urls and urls[0].isLocalFile():
            e.acceptProposedAction()

    def dropEvent(self, e):  # noqa: N802
        urls = e.mimeData().urls()
        if not urls:
            return
        p = Path(urls[0].toLocalFile())
        if p.is_dir():
            self.open_folder(p)
        elif p.suffix.lower() in (".yaml", ".yml", ".json"):
            if self.confirm_discard():
                self.open_recipe(p)
        elif p.is_file() and p.parent.is_dir():
            self.open_folder(p.parent)
        e.acceptProposedAction()

    # -- layout ---------------------------------------------------------------------------------------
    def available_geometry(self):
        """The screen area the window must fit in (tests replace it to simulate a screen)."""
        return layout.available_geometry(self)

    def _restore_layout(self) -> None:
        avail = self.available_geometry()
        self.resize(layout.initial_size(avail))
        self._default_dock_sizes()
        geo = self.settings.geometry()
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        state = self.settings.state()
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, layout.STATE_VERSION)  # a layout saved by an older version is ignored
        for title in self.settings.hidden_tabs():
            host = next((h for h in self.panel_hosts if h.title == title), None)
            if host is not None:
                self.set_tab_shown(host, False)
        layout.clamp_to(self, avail)

    def _default_dock_sizes(self) -> None:
        b, c = layout.dock_widths(self.width())
        self.resizeDocks([self.browser_dock, self.chain_dock], [b, c], Qt.Orientation.Horizontal)
        self.resizeDocks([self.jobs_dock], [max(layout.MIN_JOBS_HEIGHT, min(220, self.height() // 5))],
                         Qt.Orientation.Vertical)

    def fit_to_screen(self) -> None:
        """Keep the window inside the screen's available area (after a panel is built, on first show)."""
        if not self.isMaximized() and not self.isFullScreen():
            layout.clamp_to(self, self.available_geometry())

    def reset_layout(self) -> None:
        """Every dock back in its place and shown, every tab shown, default sizes; the saved layout is
        forgotten."""
        for dock, area in ((self.browser_dock, Qt.DockWidgetArea.LeftDockWidgetArea),
                           (self.chain_dock, Qt.DockWidgetArea.RightDockWidgetArea),
                           (self.jobs_dock, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock.setFloating(False)
            self.addDockWidget(area, dock)
            dock.show()
        for host in self.panel_hosts:
            self.set_tab_shown(host, True)
        self.settings.clear_window()
        self.fit_to_screen()
        self._default_dock_sizes()

    def showEvent(self, e):  # noqa: N802
        super().showEvent(e)
        if not self._fitted_once:
            self._fitted_once = True
            QTimer.singleShot(0, self, self.fit_to_screen)
            QTimer.singleShot(400, self, self.fit_to_screen)  # again once the window manager has framed it

    # -- shutdown ------------------------------------------------------------------------------------
    def ask_quit(self, jobs) -> bool:
        """Ask whether to quit while ``jobs`` run (``$AUGSTUDIO_QUIT_ANSWER`` answers instead: yes / no)."""
        answer = os.environ.get(QUIT_ANSWER_ENV, "").strip().lower()
        if answer:
            return answer in ("yes", "y", "1", "true")
        names = "\n".join(f"• {j.title}" for j in jobs[:8]) + ("\n…" if len(jobs) > 8 else "")
        n = len(jobs)
        box = QMessageBox(QMessageBox.Icon.Question, "Jobs are running",
                          f"{n} job{'s are' if n != 1 else ' is'} running:\n{names}\n\nQuit and cancel "
                          f"{'them' if n != 1 else 'it'}? An export resumes where it stopped when you run it "
                          "again with the same settings.", QMessageBox.StandardButton.NoButton, self)
        quit_btn = box.addButton("Cancel jobs and quit", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep running", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)  # Enter does not throw work away
        box.exec()
        return box.clickedButton() is quit_btn

    def closeEvent(self, e):  # noqa: N802
        if not self._closing:
            if not self.confirm_discard():
                e.ignore()
                return
            jobs = [j for j in self.ctx.running_jobs() if not j.background]
            if jobs and not self.ask_quit(jobs):
                e.ignore()
                return
        self._closing = True
        self.settings.save_window(self.saveGeometry(), self.saveState(layout.STATE_VERSION))
        self.browser.shutdown()
        # cancel everything, then wait a moment: jobs that write files (exports) finish the items in
        # flight and shut their worker processes down; the others stop between steps. A job inside one
        # long step (a style iteration) is left behind: the app's process exits without it (app.finish)
        self.ctx.shutdown(0)
        writers = [j for j in self.ctx.jobs if j.is_running() and j.output_dir is not None]
        deadline = time.monotonic() + 0.4
        while writers and time.monotonic() < deadline:
            QApplication.processEvents()  # their ends arrive as queued signals
            writers = [j for j in writers if j.is_running()]
            time.sleep(0.01)
        self.ctx.pool.waitForDone(max(0, min(100, int((deadline - time.monotonic()) * 1000))))
        e.accept()

    def after_first_paint(self, fn) -> None:
        QTimer.singleShot(0, self, fn)  # dropped if the window is deleted first
