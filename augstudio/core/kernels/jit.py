"""``compiled``: numba's ``njit`` (BSD-2) with the options of every compiled CPU loop here.

* ``cache``: compiled once per machine and kept next to the module (``__pycache__``), or in numba's user
  cache where that is read-only;
* ``nogil``: export and DataLoader threads run the loops side by side;
* no bounds checks, numpy's error model: the callers size every array, and the loops stay vectorisable.

Modules that use it are imported on first use (numba takes ~0.1 s to import and ~0.3 s to set up its
compiler once per process).
"""

from __future__ import annotations

import numba


def compiled(fn=None, **options):
    """``@compiled`` or ``@compiled(inline="always")``."""
    jit = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy", **options)
    return jit if fn is None else jit(fn)
