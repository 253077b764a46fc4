"""The panels: browser, preview, chain editor, saliency, mix, style, TTA, evaluate and jobs.

Each is one module (the chain editor one package) that talks to the app only through the ``AppContext``
(``augstudio.gui.qt.context``) and shared widgets; panels never import each other (an import-linter
contract). This package imports no Qt itself, so the chain editor's pure model stays Qt-free.
"""
