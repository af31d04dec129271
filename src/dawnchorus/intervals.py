"""Confidence intervals for shares estimated from reviewed samples."""

from __future__ import annotations

import numpy as np

LEVEL = 0.9


def wilson(successes: np.ndarray, trials: np.ndarray, *, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of ``successes`` out of ``trials`` (elementwise): honest at small
    counts and near 0 or 1, where the normal interval is not."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    n = np.maximum(trials, 1)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
