"""The preview panel: ``widget`` (the Qt side) over ``render`` (what it shows, computed on a worker)."""

from .widget import MESSAGE_PAGE, PAGES, PreviewWidget

__all__ = ["MESSAGE_PAGE", "PAGES", "PreviewWidget"]
