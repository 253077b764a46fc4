"""The probe classifier job: accuracy on real categorical data, determinism, reuse, cancel, bad files,
and the settings folder."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from augstudio.core.base.errors import DatasetError, JobCancelled
from augstudio.core.base.jobs import CancelToken, run_job
from augstudio.core.base.settings import settings_dir
from augstudio.core.models.loading import load_model, predict
from augstudio.core.workflows.probe import find_probe, load_or_train_probe, train_probe_job

FAST = dict(size=32, epochs=12, batch_size=16, width=8)
TRAIN = dict(FAST, device="cpu")  # bit-identical training is promised on the CPU


@pytest.fixture
def settings(tmp_path, monkeypatch):
    d = tmp_path / "settings"
    monkeypatch.setenv("AUGSTUDIO_SETTINGS_DIR", str(d))
    return d


def test_settings_dir_env_and_platform_default(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGSTUDIO_SETTINGS_DIR", str(tmp_path / "s"))
    assert settings_dir() == tmp_path / "s" and not (tmp_path / "s").exists()
    assert settings_dir(create=True).is_dir()
    monkeypatch.setenv("AUGSTUDIO_SETTINGS_DIR", "")  # empty means unset
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        assert settings_dir() == tmp_path / "xdg" / "augstudio"
    else:
        assert settings_dir().name == "augstudio"


def test_probe_learns_wafer_maps_deterministically_and_is_reused(wafer_folder, settings):
    torch.set_num_threads(1)
    progress = []
    model, res = load_or_train_probe(wafer_folder, on_progress=progress.append, **TRAIN)
    assert not res.reused and res.path.parent == settings / "probes" and res.path.is_file()
    assert res.classes == ["Center", "Donut", "none"] and res.input_mode == "onehot"
    assert res.n_val == 9 and res.n_train == 36
    # Center / Donut / none wafer maps are separable: far above chance (1/3) on held-out maps
    assert res.val_accuracy >= 0.75, res.line()
    assert any("validation accuracy" in p.message for p in progress)
    assert progress[-1].done == progress[-1].total
    assert model.input_mode == "onehot" and model.num_categories == 3 and model.input_size == (32, 32)

    # the saved model gives the same predictions as the one returned
    from augstudio.core.io.dataset import scan
    from augstudio.core.io.images import read_image

    ds = scan(wafer_folder)
    pics = [read_image(ds.abspath(it)) for it in ds.items[::5]]
    again = load_model(res.path)
    assert torch.allclose(predict(pics, model), predict(pics, again), atol=1e-6)

    # same data + settings + seed -> reused, no training
    res2 = run_job(train_probe_job(wafer_folder, **TRAIN))
    assert res2.reused and res2.path == res.path and res2.val_accuracy == pytest.approx(res.val_accuracy)
    assert find_probe(wafer_folder, **FAST) == res.path

    # retraining with the same seed gives bit-identical weights
    res3 = run_job(train_probe_job(wafer_folder, reuse=False, out=settings / "again.pt", **TRAIN))
    a = torch.load(res.path, weights_only=True)["state_dict"]
    b = torch.load(res3.path, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res3.val_accuracy == res.val_accuracy

    # a changed dataset is a different probe
    (wafer_folder / "none" / "none_000.png").unlink()
    assert find_probe(wafer_folder, **FAST) is None


def test_probe_cancel_bad_files_and_unlabelled(wafer_folder, settings, tmp_path):
    (wafer_folder / "Donut" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    token = CancelToken()
    job = train_probe_job(wafer_folder, cancel=token, **TRAIN)
    next(job)
    token.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)
    assert not (settings / "probes").exists() or not any((settings / "probes").iterdir())

    res = run_job(train_probe_job(wafer_folder, **dict(TRAIN, epochs=1)))
    assert [p for p, _ in res.skipped] == ["Donut/broken.png"]
    assert res.n_train + res.n_val == 45

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((wafer_folder / "Center").iterdir())[:3]:
        os.link(f, flat / f.name)
    with pytest.raises(DatasetError, match="class sub-folders"):
        run_job(train_probe_job(flat, **TRAIN))
