"""Where augstudio keeps per-user state (the probe classifier, GUI settings).

``settings_dir()`` is ``$AUGSTUDIO_SETTINGS_DIR`` when that variable is set and non-empty, otherwise the
platform's config folder: ``%APPDATA%\\augstudio`` on Windows, ``~/Library/Application Support/augstudio``
on macOS, ``$XDG_CONFIG_HOME/augstudio`` (default ``~/.config/augstudio``) elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import OutputError

ENV_VAR = "AUGSTUDIO_SETTINGS_DIR"


def settings_dir(create: bool = False) -> Path:
    """The per-user settings folder (see the module docstring); made when ``create`` is true."""
    env = os.environ.get(ENV_VAR, "")
    if env.strip():
        path = Path(env).expanduser()
    elif sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        path = Path(base) / "augstudio"
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / "augstudio"
    else:
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
        path = Path(base) / "augstudio"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create the settings folder ({e.strerror or e}); set "
                              f"{ENV_VAR} to a writable folder") from None
    return path
