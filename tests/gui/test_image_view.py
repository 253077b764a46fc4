"""The image pane's deferred fit: it runs once the event loop turns, and never on a pane deleted meanwhile (a
zero-timer that outlived its pane raised "Internal C++ object (ViewBox) already deleted" in a later test)."""

import shiboken6

from augstudio.gui.widgets.image_view import ImagePane, fit_later


def test_a_deferred_fit_runs_on_a_live_pane(qtbot, monkeypatch):
    pane = ImagePane()
    qtbot.addWidget(pane)
    pane.set_layout(["a", "b"], cols=2)
    calls = []
    monkeypatch.setattr(pane, "fit", lambda h, w: calls.append((h, w)))
    fit_later(pane, 30, 40)
    assert calls == []  # not before the event loop turns
    qtbot.waitUntil(lambda: calls == [(30, 40)], timeout=2000)


def test_a_deferred_fit_is_dropped_when_its_pane_is_deleted_first(qtbot):
    pane = ImagePane()
    pane.set_layout(["a", "b"], cols=2)
    views = list(pane.views)
    fit_later(pane, 30, 40)
    shiboken6.delete(pane)  # the window closed before the timer fired
    assert not shiboken6.isValid(views[0])
    qtbot.wait(50)  # pytest-qt fails the test if the timer's call raised in the event loop
