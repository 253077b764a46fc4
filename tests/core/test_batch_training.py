"""Training with each batch op through ``Recipe.batch_transform``: a small CNN on sklearn's digits (8x8,
upscaled to 32x32), 5 epochs, three seeds, compared with the same training without a batch stage.

Accuracy alone cannot tell a broken op: 30% of the labels shuffled still reaches ~0.94. The test also holds
the median test NLL to the baseline's + 0.3 (the real ops stay within ~0.22 of it: softer targets, softer
predictions; shuffled labels land ~0.45 above it), and a sabotaged op (labels shuffled within 30% of every
batch) must fail the same check. PuzzleMix takes the model being trained, as in the paper."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# one training for the test and the README's figure (`make figures`): the figure reports what this checks
from benchmarks.readme_figures.training import NLL_MARGIN, SEEDS  # noqa: E402
from benchmarks.readme_figures.training import digits as _digits  # noqa: E402
from benchmarks.readme_figures.training import train as _train  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return _digits()


def _medians(runs):
    return statistics.median(a for a, _ in runs), statistics.median(n for _, n in runs)


def _verdict(runs, baseline) -> tuple[bool, str]:
    acc, nll = _medians(runs)
    b_acc, b_nll = _medians(baseline)
    ok = acc >= 0.90 and acc >= b_acc - 0.05 and nll <= b_nll + NLL_MARGIN
    return ok, (f"accuracy {acc:.3f} (baseline {b_acc:.3f}), NLL {nll:.3f} (baseline {b_nll:.3f}, "
                f"allowed {b_nll + NLL_MARGIN:.3f})")


@pytest.fixture(scope="module")
def baseline(digits):
    return [_train(digits, [], s) for s in SEEDS]


@pytest.mark.parametrize("batch", [
    [{"op": "mixup"}],
    [{"op": "cutmix"}],
    [{"op": "puzzlemix"}],
    [{"op": "label_smoothing", "eps": 0.1}],
], ids=lambda b: b[0]["op"])
def test_small_cnn_learns_digits_with_batch_op(digits, baseline, batch):
    ok, text = _verdict([_train(digits, batch, s) for s in SEEDS], baseline)
    print(f"\n{batch[0]['op']}: {text}")
    assert ok, text


def test_a_sabotaged_op_fails_the_same_check(digits, baseline):
    ok, text = _verdict([_train(digits, [{"op": "mixup"}], s, sabotage=True) for s in SEEDS], baseline)
    print(f"\nmixup with 30% of the labels shuffled: {text}")
    assert not ok, f"the check cannot tell shuffled labels: {text}"
