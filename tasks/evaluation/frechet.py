"""The miniature world's FVD: Frechet distance between judge embeddings of two sets of clips.

FVD (Unterthiner et al.) fits a Gaussian to a video network's features of real and of generated
clips and reports the Frechet distance between them. Here the network is the judge (trained on
real world clips only), so the distance measures what the judge can see. The distance is biased
upwards at small n, so a table compares sets of equal size against the real-vs-real floor. Its
interval comes from resampling cases (bootstrap); a resample repeats clips, which inflates the
distance further, so the percentile interval is shifted back by the bootstrap's own bias (mean
of the resamples minus the estimate) and stays centred on the estimate.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from story.tasks.evaluation.intervals import LEVEL

RESAMPLES = 100


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) of (N, D) features."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with one D: {a.shape} vs {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 clips")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross)
    return max(value, 0.0)


def frechet_interval(
    reference: np.ndarray, sets: list[np.ndarray], seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, float]:
    """Mean Frechet distance of `sets` (e.g. one per sampling seed) to `reference`, with a 95%
    interval from resampling cases: set rows are paired with the reference's (row i of every set
    is case i), so one draw of cases is used for all of them."""
    n = len(reference)
    if any(len(s) != n for s in sets) or not sets:
        raise ValueError(f"every set must pair with the {n} reference clips")

    def mean_distance(idx: np.ndarray) -> float:
        return float(np.mean([frechet_distance(reference[idx], s[idx]) for s in sets]))

    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1):
        estimate = mean_distance(np.arange(n))
        draws = np.array([mean_distance(rng.integers(0, n, n)) for _ in range(resamples)])
    bias = float(draws.mean()) - estimate
    tail = (1.0 - LEVEL) / 2.0
    return {
        "fvd": round(estimate, 3),
        "low": round(max(0.0, float(np.quantile(draws, tail)) - bias), 3),
        "high": round(max(0.0, float(np.quantile(draws, 1.0 - tail)) - bias), 3),
        "n": n,
        "sets": len(sets),
    }
