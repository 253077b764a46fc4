"""Persistent settings (last folder, recent folders and recipes, window geometry and hidden tabs, device).

Stored with QSettings as an INI file in ``$AUGSTUDIO_SETTINGS_DIR`` when that variable is set and not
empty (tests redirect it), else in the platform's usual place for the "augstudio" application.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10


def open_settings() -> QSettings:
    folder = os.environ.get("AUGSTUDIO_SETTINGS_DIR", "")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / "augstudio.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "augstudio", "augstudio")


class Settings:
    def __init__(self):
        self.q = open_settings()

    def get_list(self, key: str) -> list[str]:
        v = self.q.value(key, [])
        if v is None:
            return []
        if isinstance(v, str):
            return [v] if v else []
        return [str(x) for x in v]

    def push_recent(self, key: str, value: str) -> list[str]:
        items = [x for x in self.get_list(key) if x != value]
        items.insert(0, value)
        items = items[:MAX_RECENT]
        self.q.setValue(key, items)
        self.q.sync()
        return items

    def recent_folders(self) -> list[str]:
        return self.get_list("recent/folders")

    def recent_recipes(self) -> list[str]:
        return self.get_list("recent/recipes")

    def last_folder(self) -> str:
        return str(self.q.value("last/folder", "") or "")

    def set_last_folder(self, path: str) -> None:
        self.q.setValue("last/folder", path)
        self.push_recent("recent/folders", path)

    def add_recent_recipe(self, path: str) -> None:
        self.push_recent("recent/recipes", path)

    def device(self) -> str:
        return str(self.q.value("device", "auto") or "auto")

    def set_device(self, dev: str) -> None:
        self.q.setValue("device", dev)
        self.q.sync()

    def geometry(self):
        return self.q.value("window/geometry")

    def state(self):
        return self.q.value("window/state")

    def save_window(self, geometry, state) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)
        self.q.sync()

    def clear_window(self) -> None:
        """Forget the saved window geometry, dock layout and hidden tabs (View > Reset layout)."""
        for key in ("window/geometry", "window/state", "window/hidden_tabs"):
            self.q.remove(key)
        self.q.sync()

    def hidden_tabs(self) -> list[str]:
        return self.get_list("window/hidden_tabs")

    def set_hidden_tabs(self, titles: list[str]) -> None:
        self.q.setValue("window/hidden_tabs", list(titles))
        self.q.sync()
