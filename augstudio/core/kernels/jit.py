"""The compiled CPU loops (numba, BSD-2): ``compiled``, the ``njit`` options they share, and ``load``, which
imports a module of them on first use and falls back where numba cannot be imported.

* ``cache``: compiled once per machine and kept next to the module (``__pycache__``), or in numba's user
  cache where that is read-only;
* ``nogil``: export and DataLoader threads run the loops side by side;
* no bounds checks, numpy's error model: the callers size every array, and the loops stay vectorisable.

numba takes ~0.1 s to import and ~0.3 s to set up its compiler, once per process: the modules are loaded on
first use. Where numba is missing or cannot load (a NumPy newer than it supports, a platform without its
wheels), ``load`` returns None once with a warning and the kernels run their torch forms on the CPU: the
same bytes, slower.
"""

from __future__ import annotations

import importlib
import warnings

_LOADED: dict = {}


def load(name: str):
    """``augstudio.core.kernels.<name>``, or None where numba cannot be imported."""
    try:
        return _LOADED[name]
    except KeyError:
        pass
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ImportError as e:
        warnings.warn(f"numba could not be loaded ({e}); the CPU runs the torch forms of the compiled "
                      "kernels instead: the same pixels, slower. Fix: pip install 'numba>=0.60' for this "
                      "NumPy", RuntimeWarning, stacklevel=2)
        module = None
    _LOADED[name] = module
    return module


def compiled(fn=None, **options):
    """``@compiled`` or ``@compiled(inline="always")``: numba's ``njit`` with the options above."""
    import numba  # deferred: numba (only modules of compiled loops call this, and they are loaded lazily)

    jit = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy", **options)
    return jit if fn is None else jit(fn)
