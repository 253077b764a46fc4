"""Texture synthesis and Gatys style transfer as jobs: the loss falls, output size, cancel, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base.errors import JobCancelled
from augstudio.core.base.jobs import CancelToken, run_job
from augstudio.core.methods.style.optimize import nst_job, texture_job


@pytest.fixture(scope="module")
def brick64():
    from skimage import data

    im = Image.fromarray(data.brick()).resize((64, 64), Image.BILINEAR)
    return torch.from_numpy(np.array(im)).unsqueeze(0).contiguous()  # gray 1 x 64 x 64


def test_texture_lbfgs_random_features_style_loss_falls_100x(brick64):
    torch.set_num_threads(1)
    previews = []
    result = run_job(texture_job(brick64, size=(64, 64), features="random", iterations=12, optimizer="lbfgs",
                                 preview_every=4), previews.append)
    start, end = result.losses[0], result.losses[-1]
    assert start / end >= 100, (start, end)
    assert result.image.shape == (3, 64, 64) and result.image.dtype == torch.uint8
    assert torch.equal(result.image[0], result.image[2])  # a gray source gives a gray texture
    assert [p.done for p in previews] == list(range(1, 13)) and previews[-1].total == 12
    shown = [p.preview["image"] for p in previews if p.preview["image"] is not None]
    assert len(shown) == 3 and shown[-1].shape == (3, 64, 64)
    assert all(isinstance(p.preview["loss"], float) for p in previews)


def test_texture_output_size_is_independent_of_source_and_pyramid_is_seeded(brick64):
    torch.set_num_threads(1)
    runs = [run_job(texture_job(brick64, size=(40, 56), iterations=4, optimizer="adam", pyramid=2, seed=s))
            for s in (5, 5, 6)]
    assert runs[0].image.shape == (3, 40, 56)
    assert torch.equal(runs[0].image, runs[1].image)  # same seed, same pixels
    assert not torch.equal(runs[0].image, runs[2].image)
    assert len(runs[0].losses) == 1 + 4


def test_texture_job_stops_when_cancelled(brick64):
    token = CancelToken()
    job = texture_job(brick64, size=(32, 32), iterations=50, optimizer="adam", token=token)
    seen = []
    with pytest.raises(JobCancelled, match="cancelled after 3 of 50"):
        for p in job:
            seen.append(p)
            if p.done == 3:
                token.cancel()
    assert len(seen) == 3


def test_nst_vgg19_random_weights_from_content_lowers_total_loss(astronaut, chelsea):
    torch.set_num_threads(1)
    content = astronaut.resize((48, 48))
    style = chelsea.resize((48, 48))
    r = run_job(nst_job(content, style, features="vgg19", weights="random", iterations=8, alpha=1.0, beta=1e5,
                        style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1"))
    assert r.image.shape == (3, 48, 48)
    assert r.losses[-1] < 0.5 * r.losses[0]
    # from content with beta = 0 the content image is already optimal: nothing moves
    r0 = run_job(nst_job(content, style, features="random", iterations=2, beta=0.0, init="content"))
    assert r0.losses[0] == 0.0
    assert (r0.image.int() - torch.from_numpy(np.array(content)).permute(2, 0, 1).int()).abs().max() <= 1
