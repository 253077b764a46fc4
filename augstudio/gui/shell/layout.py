"""Window geometry that fits the screen the window is on.

The first window takes at most the screen's available area (1440 x 900 where there is room); a saved
geometry is clamped to the current screen (a window saved on a larger monitor comes back fully visible);
the docks never get narrower than they can be read at, and "reset layout" puts every dock back at sizes
that follow the window's width.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QGuiApplication

DEFAULT_SIZE = QSize(1440, 900)
# the narrowest a dock can be and still be read: one thumbnail column and the class list; the op names
# and a parameter's slider with its value
MIN_DOCK_WIDTH = {"Browser": 250, "Chain": 300}
MIN_JOBS_HEIGHT = 110
STATE_VERSION = 2  # bump when the docks change: an older saved layout is then ignored
# a window manager's frame, before it is known (title bar and borders): the first size leaves room for it
ASSUMED_FRAME = QSize(12, 40)


def available_geometry(widget=None) -> QRect:
    """The available area (without task bars) of the screen ``widget`` is on, else the primary screen."""
    screen = widget.screen() if widget is not None else None
    if screen is None:
        screen = QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1280, 800)


def initial_size(avail: QRect, frame: QSize = ASSUMED_FRAME) -> QSize:
    """The first window's size: the default where it fits, else the available area less the frame."""
    return QSize(max(640, min(DEFAULT_SIZE.width(), avail.width() - frame.width())),
                 max(480, min(DEFAULT_SIZE.height(), avail.height() - frame.height())))


def frame_extra(win) -> QSize:
    """What the window manager's frame adds to the window's size (0 before the first show)."""
    fg = win.frameGeometry()
    return QSize(max(0, fg.width() - win.width()), max(0, fg.height() - win.height()))


def clamp_to(win, avail: QRect) -> bool:
    """Resize and move ``win`` so that its frame lies inside ``avail``; True when anything changed."""
    extra = frame_extra(win)
    w = min(win.width(), avail.width() - extra.width())
    h = min(win.height(), avail.height() - extra.height())
    changed = (w, h) != (win.width(), win.height())
    if changed:
        win.resize(max(1, w), max(1, h))
    fg = win.frameGeometry()
    x = min(max(fg.x(), avail.left()), avail.right() + 1 - fg.width())
    y = min(max(fg.y(), avail.top()), avail.bottom() + 1 - fg.height())
    if (x, y) != (fg.x(), fg.y()):
        win.move(max(avail.left(), x), max(avail.top(), y))
        changed = True
    return changed


def dock_widths(window_width: int) -> tuple[int, int]:
    """Default widths of the browser and the chain docks for a window this wide."""
    browser = max(MIN_DOCK_WIDTH["Browser"], min(430, int(window_width * 0.24)))
    chain = max(MIN_DOCK_WIDTH["Chain"], min(420, int(window_width * 0.26)))
    return browser, chain
