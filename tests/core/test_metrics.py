"""Calibration metrics against values worked out by hand, and against the reference formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augstudio.core.workflows import metrics

# conf / correct per row: .9 yes, .8 no, .7 yes, .55 no, .62 yes, .65 no
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45], [0.62, 0.38], [0.35, 0.65]])
LABELS = np.array([0, 1, 1, 1, 0, 0])


def test_accuracy_and_nll_by_hand():
    assert metrics.accuracy(PROBS, LABELS) == pytest.approx(3 / 6)
    # -(ln .9 + ln .2 + ln .7 + ln .45 + ln .62 + ln .35) / 6
    assert metrics.nll(PROBS, LABELS) == pytest.approx(0.7329732, abs=1e-6)


def test_reliability_bins_by_hand():
    r = metrics.reliability(PROBS, LABELS, n_bins=15)
    # 15 bins of width 1/15, right-closed: .9 -> bin 13, .8 -> 11, .7 -> 10, .55 -> 8, .62 and .65 -> 9
    expected_counts = [0] * 15
    for b, n in {13: 1, 11: 1, 10: 1, 8: 1, 9: 2}.items():
        expected_counts[b] = n
    assert r.counts == expected_counts
    assert r.accuracy[9] == pytest.approx(0.5) and r.confidence[9] == pytest.approx(0.635)
    assert r.accuracy[13] == 1.0 and r.accuracy[11] == 0.0
    assert r.accuracy[0] is None and r.confidence[0] is None
    assert r.edges[0] == 0 and r.edges[-1] == 1 and len(r.edges) == 16


def test_ece_by_hand():
    # singleton bins contribute |acc - conf| / 6: .1, .8, .3, .55; the shared bin 2/6 * |.5 - .635|
    expected = (0.1 + 0.8 + 0.3 + 0.55) / 6 + 2 / 6 * 0.135
    assert metrics.ece(PROBS, LABELS) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.3366667, abs=1e-7)


def test_bin_edges_are_right_closed():
    # exact binary fractions: with 4 bins, 0.75 belongs to (0.5, 0.75], 0.5 to (0.25, 0.5], 0 to the first
    assert metrics.bin_index([0.0, 0.25, 0.5, 0.75, 1.0, 0.7500001], 4).tolist() == [0, 0, 1, 2, 3, 3]


def _reference_ece(probs, labels, n_bins):
    """Guo et al.'s formulation: bins (lower, upper] from linspace, weighted |acc - conf|."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    bounds = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return total


def test_ece_matches_reference_on_random_predictions():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(500, 5)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, size=500)
    assert metrics.ece(probs, labels) == pytest.approx(_reference_ece(probs, labels, 15), abs=1e-12)
    # a perfectly confident, perfectly right classifier is perfectly calibrated
    onehot = np.eye(5)[labels]
    assert metrics.ece(onehot, labels) == 0.0
    assert metrics.nll(onehot, labels) == pytest.approx(0.0, abs=1e-12)


def test_nll_of_a_confident_mistake_is_finite():
    assert math.isfinite(metrics.nll([[1.0, 0.0]], [1]))


def test_per_class_accuracy_by_hand():
    # class 0 rows: 0 (right), 4 (right), 5 (wrong: argmax 1); class 1 rows: 1 (wrong), 2 (right), 3 (wrong)
    assert metrics.per_class_accuracy(PROBS, LABELS) == pytest.approx([2 / 3, 1 / 3])
    assert metrics.per_class_accuracy(PROBS, LABELS, num_classes=3)[2] is None


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one entry per row"):
        metrics.accuracy(PROBS, LABELS[:3])
    with pytest.raises(ValueError, match="within 0 .. 1"):
        metrics.accuracy(PROBS, [0, 1, 2, 0, 0, 0])


def test_paired_comparison_matches_scipy_ttest_rel():
    from scipy import stats

    a = [0.81, 0.84, 0.79, 0.86]
    b = [0.78, 0.80, 0.79, 0.82]
    c = metrics.paired_comparison(a, b)
    ref = stats.ttest_rel(a, b)
    assert c["t"] == pytest.approx(ref.statistic) and c["p"] == pytest.approx(ref.pvalue)
    assert c["mean_diff"] == pytest.approx(0.0275)
    assert c["verdict"] == ("better" if ref.pvalue < 0.05 else "within noise")
    # for a loss, lower is better
    lower = metrics.paired_comparison([1.0, 1.1, 0.9, 1.0], [1.5, 1.6, 1.45, 1.52], higher_is_better=False)
    assert lower["verdict"] == "better"  # a lower loss than the baseline on every seed
    assert metrics.paired_comparison([1.5, 1.6, 1.45, 1.52], [1.0, 1.1, 0.9, 1.0], higher_is_better=False)["verdict"] == "worse"
    assert metrics.paired_comparison([0.8], [0.7])["verdict"].startswith("within noise")
    assert metrics.paired_comparison([0.8, 0.9], [0.8, 0.9])["verdict"] == "within noise"


def test_mean_std_uses_sample_std():
    assert metrics.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert metrics.mean_std([5.0]) == (5.0, 0.0)
