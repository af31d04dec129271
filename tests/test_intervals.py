"""Wilson intervals: inside [0, 1], around the share, and covering the truth as often as promised."""

from __future__ import annotations

import numpy as np

from dawnchorus.intervals import wilson


def test_wilson_interval_is_inside_zero_one_and_covers_the_share():
    low, high = wilson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert low[0] == 0 and high[2] == 1 and low[1] < 0.5 < high[1]


def test_a_90_percent_interval_covers_the_true_share_about_90_percent_of_the_time():
    rng = np.random.default_rng(0)
    successes = rng.binomial(30, 0.2, size=4000)
    low, high = wilson(successes, np.full(4000, 30))
    assert 0.86 <= float(((low <= 0.2) & (0.2 <= high)).mean()) <= 0.95
