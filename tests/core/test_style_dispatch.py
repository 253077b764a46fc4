"""One style dispatcher: ``augstudio style``, the dispatcher the GUI's Style panel runs, and the ``stylize``
recipe op give the same pixels for the same seed (randconv, stats, fast); bad settings are refused with
what to do. The GUI side of the same check is tests/gui/test_style_panel.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.cli import main
from augstudio.core.base import seeding
from augstudio.core.base.errors import ParamError
from augstudio.core.base.jobs import run_job
from augstudio.core.io.images import read_image
from augstudio.core.methods.style import fast as FS
from augstudio.core.methods.style.dispatch import RANDOM_STREAM, StyleSettings, style_job
from augstudio.core.ops.style import Stylize


def op_pixels(path, seed, **values):
    """The stylize op with its parameters drawn from the dispatcher's generator for ``seed``."""
    pic = read_image(path)
    op = Stylize(**{**{p.name: p.default for p in Stylize.params}, **values})
    params = op.sample(seeding.generator(seed, stream=RANDOM_STREAM), pic.size)
    return op.apply(pic.pixels, params, pic.kind)


@pytest.fixture
def content(tmp_path):
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((72, 60)).save(path)
    return path


@pytest.mark.parametrize(("method", "extra"), [("randconv", {}), ("stats", {"strength": 1.1})])
def test_cli_dispatcher_and_op_agree_for_the_same_seed(tmp_path, content, method, extra, capsys):
    out = tmp_path / f"{method}.png"
    args = ["style", method, str(content), "--out", str(out), "--seed", "7", "--alpha", "0.8",
            "--max-size", "48"] + [a for k, v in extra.items() for a in (f"--{k}", str(v))]
    assert main(args) == 0
    assert method in capsys.readouterr().out
    cli = read_image(out).pixels
    settings = StyleSettings(seed=7, alpha=0.8, max_size=48, **extra)
    dispatched = run_job(style_job(method, settings, content)).image
    op = op_pixels(content, 7, method=method, alpha=0.8, max_size=48, **extra)
    assert torch.equal(cli, dispatched) and torch.equal(dispatched, op)
    assert cli.shape == (3, 60, 72)  # stylised at 48 px, resized back like the op
    other = run_job(style_job(method, StyleSettings(seed=8, alpha=0.8, max_size=48, **extra), content)).image
    assert not torch.equal(other, dispatched)


def test_fast_apply_runs_the_ops_fast_definition(tmp_path, content):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FS.save_fast(FS.TransformerNet(8), tmp_path / "net.pth")
    out = tmp_path / "fast.png"
    assert main(["style", "fast-apply", str(model), str(content), "--out", str(out), "--alpha", "0.5",
                 "--max-size", "40"]) == 0
    want = op_pixels(content, 0, method="fast", model=str(model), alpha=0.5, max_size=40)
    assert torch.equal(read_image(out).pixels, want)


def test_bad_settings_are_refused_with_what_to_do(content):
    with pytest.raises(ParamError, match="one of texture"):
        run_job(style_job("cartoon", StyleSettings(), content))
    with pytest.raises(ParamError, match="adain-train"):
        run_job(style_job("adain", StyleSettings(), content, [content]))
    with pytest.raises(ParamError, match="alpha must be within 0 .. 1"):
        run_job(style_job("randconv", StyleSettings(alpha=2.0), content))
    with pytest.raises(ParamError, match="choose a style image"):
        run_job(style_job("texture", StyleSettings()))
    gray = np.asarray(Image.open(content).convert("L"))
    res = run_job(style_job("randconv", StyleSettings(seed=1), torch.from_numpy(gray)[None].clone()))
    assert res.image.shape == (3, 60, 72)  # gray content is stylised as three channels
