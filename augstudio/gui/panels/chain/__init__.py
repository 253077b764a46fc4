"""The chain editor, split by responsibility: ``model`` (pure Python, no Qt), ``commands`` (undo steps),
``controller`` (model + undo stack + recipe file), ``steps`` (the Qt list of steps), ``step_editor``,
``palette`` and ``editor`` (the panel itself)."""
