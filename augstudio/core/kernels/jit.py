"""The compiled CPU loops (numba, BSD-2): ``compiled``, the ``njit`` options they share, and ``load``, which
imports a module of them on first use and falls back where numba cannot be imported.

* ``cache``: compiled once per machine and kept next to the module (``__pycache__``), or in numba's user
  cache where that is read-only;
* ``nogil``: export and DataLoader threads run the loops side by side;
* no bounds checks, numpy's error model: the callers size every array, and the loops stay vectorisable.

numba takes ~0.1 s to import and ~0.3 s to set up its compiler, once per process: the modules are loaded on
first use (or on a background thread, ``load_in_background``). Where numba is missing or cannot load (a
NumPy newer than it supports, a platform without its wheels), ``load`` returns None once with a warning and
the kernels run their torch forms on the CPU: the same bytes, slower.
"""

from __future__ import annotations

import importlib
import threading
import warnings

MODULES = ("seed_jit", "noise_jit", "color_jit", "filters_jit", "warp_jit")
_LOADED: dict = {}
_BACKGROUND: dict = {}  # "on": load_in_background() was called; "thread": the loading thread (or the one that
# promised to load); "started": the loading has begun
_LOCK = threading.Lock()


def load(name: str):
    """``augstudio.core.kernels.<name>``, or None where numba cannot be imported (or, after
    ``load_in_background``, while the loops are still loading)."""
    try:
        return _LOADED[name]
    except KeyError:
        pass
    if _BACKGROUND.get("on"):
        _start_loading()
        return None
    module = _LOADED[name] = _import(name)
    return module


def load_in_background(on_this_thread: bool = False) -> None:
    """From now on ``load`` does not wait for numba: its first call starts one thread that imports every
    module of compiled loops and runs each loop once (numba's ~0.5 s of set-up per process), and until that
    is done the kernels run their torch forms, which give the same pixels. For the app, whose first preview
    would otherwise wait for it.

    ``on_this_thread``: the calling thread promises to call ``load_all_now`` itself, and ``load`` never starts
    a thread of its own. The app's torch loader does this: it holds the GUI's cycle-collection guard, and a
    thread started by ``load`` from a pool task would not (numba's compiler allocates for seconds on an
    empty cache; an automatic collection there can delete a Qt object off the GUI thread: see
    ``gui.qt.gc_guard``)."""
    with _LOCK:
        _BACKGROUND["on"] = True
        if on_this_thread:
            _BACKGROUND.setdefault("thread", threading.current_thread())


def load_all_now() -> None:
    """Load every module of compiled loops on the calling thread (the app's background loader calls it after
    ``load_in_background(on_this_thread=True)``); a no-op where another thread loads them, or once done."""
    me = threading.current_thread()
    with _LOCK:
        owner = _BACKGROUND.get("thread")
        if _BACKGROUND.get("started") or (owner not in (None, me) and owner.is_alive()):
            return
        _BACKGROUND["thread"], _BACKGROUND["started"] = me, True
    _load_all()


def _start_loading() -> None:
    with _LOCK:
        if "thread" in _BACKGROUND:
            return
        # not a daemon: an app quitting in the first second waits for it rather than stopping it mid-import
        _BACKGROUND["thread"] = threading.Thread(target=_load_all, name="augstudio-compiled-loops")
        _BACKGROUND["started"] = True
        _BACKGROUND["thread"].start()


def _load_all() -> None:
    for name in MODULES:
        module = _import(name)
        if module is not None:
            try:
                module.warm_up()
            except Exception as e:  # noqa: BLE001 - a loop that does not compile here: the torch forms run
                warnings.warn(f"the compiled loops of {name} failed to load ({e}); the CPU runs their torch "
                              "forms instead: the same pixels, slower", RuntimeWarning, stacklevel=2)
                module = None
        _LOADED[name] = module


def _import(name: str):
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except (ImportError, RuntimeError) as e:  # RuntimeError: numba finds no writable cache folder
        warnings.warn(f"numba could not be loaded ({e}); the CPU runs the torch forms of the compiled "
                      "kernels instead: the same pixels, slower. Fix: pip install 'numba>=0.60' for this "
                      "NumPy", RuntimeWarning, stacklevel=3)
        return None


def compiled(fn=None, **options):
    """``@compiled`` or ``@compiled(inline="always")``: numba's ``njit`` with the options above."""
    import numba  # deferred: numba (only modules of compiled loops call this, and they are loaded lazily)

    jit = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy", **options)
    return jit if fn is None else jit(fn)
