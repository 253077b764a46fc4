"""Without numba (missing, or unable to load for this NumPy), the kernels that run compiled on the CPU fall
back to their torch forms with one warning, and every op gives the same pixels."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from augstudio.core.engine.recipe import Recipe
from augstudio.core.kernels import color, jit

STEPS = [{"op": "gaussian_noise", "std": 0.2}, {"op": "gaussian_noise", "std": 0.5, "mean": 0.1, "per_channel": False},
         {"op": "speckle_noise"}, {"op": "poisson_noise"}, {"op": "salt_pepper"},
         {"op": "grayscale"}, {"op": "saturation", "factor": [0.0, 3.0]}, {"op": "hue", "shift": 0.4},
         {"op": "contrast"}, {"op": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2},
         {"op": "rotate", "degrees": [-40, 40], "interpolation": "nearest", "fill": [10, 20, 30]}, {"op": "rand_augment"},
         {"op": "gamma", "gamma": [0.3, 3.0]}, {"op": "pad", "padding": 3, "fill": [10, 20, 30]},
         {"op": "random_crop", "size": [200, 150]}, {"op": "sharpness", "factor": [0.0, 3.0]}]


def _outputs(x):
    return [Recipe.from_dict({"seed": 5, "steps": [s]}).apply(x, item=k) for s in STEPS for k in range(2)]


@pytest.fixture()
def without_numba(monkeypatch):
    for name in ("numba", "augstudio.core.kernels.noise_jit", "augstudio.core.kernels.color_jit",
                 "augstudio.core.kernels.filters_jit", "augstudio.core.kernels.warp_jit"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(color, "_COMPILED", {})


def test_kernels_fall_back_to_their_torch_forms_without_numba(request):
    from skimage import data

    x = torch.from_numpy(np.ascontiguousarray(data.astronaut()[::3, ::3])).permute(2, 0, 1).contiguous()
    fast = _outputs(x)
    assert jit.load("noise_jit") is not None and color._compiled()[0] is not None
    assert jit.load("warp_jit") is not None and jit.load("filters_jit") is not None
    request.getfixturevalue("without_numba")
    with pytest.warns(RuntimeWarning, match="numba could not be loaded.*same pixels"):
        slow = _outputs(x)
    assert jit.load("noise_jit") is None and color._compiled() == (None, None) and jit.load("warp_jit") is None
    assert jit.load("filters_jit") is None
    for k, (a, b) in enumerate(zip(fast, slow)):
        assert torch.equal(a, b), STEPS[k // 2]


def test_loading_in_the_background_gives_the_same_pixels_meanwhile(monkeypatch):
    """The app's mode: ``load`` starts one loading thread and does not wait for it; the kernels run their
    torch forms until it is done, then the compiled loops, with the same pixels throughout."""
    from skimage import data

    x = torch.from_numpy(np.ascontiguousarray(data.astronaut()[::4, ::4])).permute(2, 0, 1).contiguous()
    fast = _outputs(x)
    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(jit, "_BACKGROUND", {})
    jit.load_in_background()
    assert jit.load("noise_jit") is None  # not waited for
    meanwhile = _outputs(x)
    jit._BACKGROUND["thread"].join(timeout=120)
    assert jit.load("noise_jit") is not None and jit.load("color_jit") is not None
    after = _outputs(x)
    for k, (a, b, c) in enumerate(zip(fast, meanwhile, after)):
        assert torch.equal(a, b) and torch.equal(a, c), STEPS[k // 2]


def test_a_thread_that_promised_to_load_is_the_only_one_that_loads(monkeypatch):
    """The app's torch loader says it will load the loops itself (``on_this_thread``): a pool task asking for
    them meanwhile gets None (the torch forms) and starts no thread of its own, which would compile without
    the loader's gc_guard hold; without the promise, the same request starts one (the control)."""
    import threading

    def ask_from_another_thread():
        got = []
        t = threading.Thread(target=lambda: got.append(jit.load("noise_jit")))
        t.start()
        t.join(30)
        return got[0], jit._BACKGROUND.get("thread")

    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(jit, "_BACKGROUND", {})
    jit.load_in_background(on_this_thread=True)
    module, loader = ask_from_another_thread()
    assert module is None and loader is threading.current_thread()
    jit.load_all_now()
    assert jit.load("noise_jit") is not None and jit.load("warp_jit") is not None
    jit.load_all_now()  # a second call, or one from another thread, does nothing

    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(jit, "_BACKGROUND", {})
    jit.load_in_background()
    module, loader = ask_from_another_thread()
    assert module is None and loader.name == "augstudio-compiled-loops"
    loader.join(120)
    jit.load_all_now()  # the loading thread did it: nothing left to do
    assert jit._BACKGROUND["thread"] is loader


def test_numba_without_a_cache_folder_falls_back_too(monkeypatch):
    """numba raises RuntimeError at import where it finds no writable cache folder: the same fallback."""
    def no_locator(name):
        raise RuntimeError(f"cannot cache function 'hash_rows': no locator available for file '{name}'")

    monkeypatch.setattr(jit, "_LOADED", {})
    monkeypatch.setattr(jit.importlib, "import_module", no_locator)
    with pytest.warns(RuntimeWarning, match="no locator available"):
        assert jit.load("noise_jit") is None
    assert jit.load("noise_jit") is None  # decided once
