"""Classification metrics for experiments: accuracy, negative log-likelihood, expected calibration error
with its reliability bins, per-class accuracy, and a paired comparison across seeds.

All functions take plain arrays (numpy or torch, converted with ``numpy.asarray``): ``probs`` is
``N x K`` class probabilities (rows sum to 1), ``labels`` is ``N`` integer class indices.

Definitions (Guo et al., "On Calibration of Modern Neural Networks", 2017):

* confidence of a prediction = its largest probability; prediction = its argmax (ties: lowest index).
* bins: ``n_bins`` equal-width intervals of confidence, (0, 1/B], (1/B, 2/B], ... (right-closed, the first
  also holds 0).
* ECE = sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|.
* NLL = mean of -log p(true class), with p clipped to at least 1e-12 so a confident mistake is finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
_EPS = 1e-12


def _arrays(probs, labels):
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2:
        raise ValueError(f"probs must be N x K, got shape {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have one entry per row of probs ({p.shape[0]}), got shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be within 0 .. {p.shape[1] - 1}")
    return p, y


def accuracy(probs, labels) -> float:
    p, y = _arrays(probs, labels)
    if len(y) == 0:
        return float("nan")
    return float((p.argmax(1) == y).mean())


def nll(probs, labels) -> float:
    p, y = _arrays(probs, labels)
    if len(y) == 0:
        return float("nan")
    return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, None)).mean())


@dataclass
class ReliabilityBins:
    edges: list[float]  # n_bins + 1 edges from 0 to 1
    counts: list[int]
    accuracy: list[float | None]  # None for an empty bin
    confidence: list[float | None]

    def to_dict(self) -> dict:
        return {"edges": self.edges, "counts": self.counts, "accuracy": self.accuracy,
                "confidence": self.confidence}


def bin_index(confidence, n_bins: int = ECE_BINS) -> np.ndarray:
    """The bin of each confidence: bin b holds (b/B, (b+1)/B]; confidence 0 goes to bin 0."""
    c = np.asarray(confidence, dtype=np.float64)
    return np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(probs, labels, n_bins: int = ECE_BINS) -> ReliabilityBins:
    p, y = _arrays(probs, labels)
    conf = p.max(1) if len(y) else np.zeros(0)
    correct = (p.argmax(1) == y) if len(y) else np.zeros(0, dtype=bool)
    b = bin_index(conf, n_bins)
    counts, accs, confs = [], [], []
    for k in range(n_bins):
        m = b == k
        n = int(m.sum())
        counts.append(n)
        accs.append(float(correct[m].mean()) if n else None)
        confs.append(float(conf[m].mean()) if n else None)
    edges = [k / n_bins for k in range(n_bins + 1)]
    return ReliabilityBins(edges, counts, accs, confs)


def ece(probs, labels, n_bins: int = ECE_BINS) -> float:
    r = reliability(probs, labels, n_bins)
    total = sum(r.counts)
    if total == 0:
        return float("nan")
    return float(sum(n / total * abs(a - c) for n, a, c in zip(r.counts, r.accuracy, r.confidence) if n))


def per_class_accuracy(probs, labels, num_classes: int | None = None) -> list[float | None]:
    """Accuracy within each true class (None for a class absent from ``labels``)."""
    p, y = _arrays(probs, labels)
    k = p.shape[1] if num_classes is None else num_classes
    pred = p.argmax(1)
    out: list[float | None] = []
    for c in range(k):
        m = y == c
        out.append(float((pred[m] == c).mean()) if m.any() else None)
    return out


def summary(probs, labels, n_bins: int = ECE_BINS) -> dict:
    """Every metric of one evaluation, as plain data."""
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels), "ece": ece(probs, labels, n_bins),
            "per_class_accuracy": per_class_accuracy(probs, labels),
            "reliability": reliability(probs, labels, n_bins).to_dict()}


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def paired_comparison(a, b, alpha: float = 0.05, higher_is_better: bool = True) -> dict:
    """Compare ``a`` against ``b`` measured on the same seeds (paired): mean and std of ``a - b``, the paired
    t statistic, its two-sided p-value (Student's t with n-1 degrees of freedom) and a verdict.

    The verdict is "better" / "worse" (for ``a``; for a loss pass ``higher_is_better=False``) only when p < alpha; otherwise "within noise" (also with fewer than
    two seeds, or when every difference is zero).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired values need the same seeds on both sides")
    d = a - b
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    std = float(d.std(ddof=1)) if n > 1 else 0.0
    t = p = float("nan")
    if n > 1:
        if std > 0:
            from scipy import stats  # deferred: scipy

            t = mean / (std / math.sqrt(n))
            p = float(2 * stats.t.sf(abs(t), df=n - 1))
        elif mean != 0:
            t, p = math.copysign(math.inf, mean), 0.0
        else:
            t, p = 0.0, 1.0
    if n < 2:
        verdict = "within noise (one seed: no estimate of noise)"
    elif p < alpha:
        verdict = "better" if (mean > 0) == higher_is_better else "worse"
    else:
        verdict = "within noise"
    return {"n": n, "mean_diff": mean, "std_diff": std, "t": t, "p": p, "verdict": verdict}
