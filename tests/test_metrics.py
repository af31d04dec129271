"""Tests for dawnchorus.metrics: the competition metric must match the leaderboard's
(scikit-learn's LRAP with tie handling), and bad score tables must fail loudly and precisely."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

from dawnchorus.errors import InputError
from dawnchorus.metrics import (
    EvaluationReport,
    average_precision_per_species,
    evaluate,
    lwlrap,
    mean_average_precision,
    per_species_lwlrap,
    read_score_table,
    threshold_stats,
    total_average_precision,
    youden_threshold,
)


def slow_lwlrap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Definition, written the obvious way: precision at each positive label's rank."""
    total, count = 0.0, 0
    for t, s in zip(y_true, y_score):
        for j in np.flatnonzero(t):
            at_or_above = s >= s[j]
            total += (t[at_or_above].sum()) / at_or_above.sum()
            count += 1
    return total / count


def sklearn_lwlrap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    rows = y_true.sum(axis=1) > 0
    return label_ranking_average_precision_score(
        y_true[rows], y_score[rows], sample_weight=y_true[rows].sum(axis=1))


def random_cases(n_cases: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    made = 0
    while made < n_cases:
        n, c = int(rng.integers(1, 40)), int(rng.integers(1, 25))
        y_true = (rng.random((n, c)) < rng.uniform(0.02, 0.9)).astype(int)
        if y_true.sum() == 0:
            continue
        mode = made % 3
        if mode == 0:  # heavy ties
            y_score = rng.integers(0, int(rng.integers(1, 5)), size=(n, c)).astype(float)
        elif mode == 1:  # some ties
            y_score = np.round(rng.random((n, c)), 1)
        else:
            y_score = rng.random((n, c))
        made += 1
        yield y_true, y_score


# ---- lwlrap ---------------------------------------------------------------------------

def test_lwlrap_matches_sklearn_and_slow_reference_on_random_cases():
    n_rows_without_positives = 0
    for y_true, y_score in random_cases(300):
        got = lwlrap(y_true=y_true, y_score=y_score)
        assert got == pytest.approx(sklearn_lwlrap(y_true, y_score), abs=1e-12)
        assert got == pytest.approx(slow_lwlrap(y_true, y_score), abs=1e-12)
        n_rows_without_positives += int((y_true.sum(axis=1) == 0).sum())
    assert n_rows_without_positives > 50  # the excluded-row path was exercised


def test_lwlrap_perfect_and_hand_example():
    y_true = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    assert lwlrap(y_true=y_true, y_score=y_true * 0.9 + 0.05) == 1.0
    # Row 0: positives ranked 1 and 3 -> precisions 1/1 and 2/3. Row 1: positive ranked 2 -> 1/2.
    y_score = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.5, 0.2, 0.1]])
    assert lwlrap(y_true=y_true, y_score=y_score) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # A full tie ranks every label last: precision = positives / labels.
    assert lwlrap(y_true=np.array([[1, 0, 0, 1]]), y_score=np.zeros((1, 4))) == pytest.approx(0.5)


def test_rows_without_positives_are_ignored():
    y_true = np.array([[1, 0, 0], [0, 0, 0]])
    y_score = np.array([[0.9, 0.1, 0.2], [0.9, 0.8, 0.7]])
    assert lwlrap(y_true=y_true, y_score=y_score) == 1.0


def test_per_species_lwlrap_weighted_mean_is_lwlrap():
    for y_true, y_score in random_cases(50, seed=1):
        per = per_species_lwlrap(y_true=y_true, y_score=y_score)
        pos = y_true.sum(axis=0)
        assert np.isnan(per[pos == 0]).all()
        assert np.nansum(per * pos) / pos.sum() == pytest.approx(lwlrap(y_true=y_true, y_score=y_score))


# ---- AP family ------------------------------------------------------------------------

def test_average_precision_per_species_matches_sklearn():
    for y_true, y_score in random_cases(20, seed=3):
        ap = average_precision_per_species(y_true=y_true, y_score=y_score)
        for j in range(y_true.shape[1]):
            if y_true[:, j].sum() == 0:
                assert np.isnan(ap[j])
            else:
                assert ap[j] == pytest.approx(average_precision_score(y_true[:, j], y_score[:, j]))


def test_map_ignores_species_without_positives_and_total_ap_pools():
    y_true = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    y_score = np.array([[0.9, 0.2, 0.5], [0.3, 0.8, 0.1], [0.2, 0.6, 0.4]])
    ap = average_precision_per_species(y_true=y_true, y_score=y_score)
    assert np.isnan(ap[2])
    assert mean_average_precision(y_true=y_true, y_score=y_score) == pytest.approx(ap[:2].mean())
    assert total_average_precision(y_true=y_true, y_score=y_score) == pytest.approx(
        average_precision_score(y_true.ravel(), y_score.ravel()))


# ---- threshold stats ------------------------------------------------------------------

def test_threshold_stats_hand_example():
    y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    y_score = np.array([[0.9, 0.6, 0.1], [0.4, 0.7, 0.2], [0.6, 0.1, 0.3], [0.1, 0.2, 0.4]])
    st = threshold_stats(y_true=y_true, y_score=y_score, threshold=0.5, species=["a", "b", "c"])
    assert list(st.index) == ["a", "b", "c", "total", "mean"]
    a, b, c = st.loc["a"], st.loc["b"], st.loc["c"]
    assert (a.tp, a.fp, a.fn, a.tn, a.positives) == (1, 1, 1, 1, 2)
    assert (b.tp, b.fp, b.fn, b.tn, b.positives) == (1, 1, 1, 1, 2)
    assert (c.tp, c.fp, c.fn, c.tn, c.positives) == (0, 0, 0, 4, 0)
    assert a.precision == 0.5 and a.recall == 0.5 and a.fpr == 0.5
    assert np.isnan(c.precision) and np.isnan(c.recall) and c.fpr == 0.0
    tot = st.loc["total"]
    assert (tot.tp, tot.fp, tot.fn, tot.tn, tot.positives, tot.negatives) == (2, 2, 2, 6, 4, 8)
    assert tot.precision == 0.5 and tot.recall == 0.5 and tot.fpr == pytest.approx(2 / 8)
    mean = st.loc["mean"]
    assert mean.precision == 0.5  # NaN for c is skipped
    assert mean.fpr == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert mean.positives == pytest.approx(4 / 3)


def test_threshold_is_inclusive():
    st = threshold_stats(y_true=np.array([[1]]), y_score=np.array([[0.5]]), threshold=0.5)
    assert st.loc["s0", "tp"] == 1


# ---- input checks on arrays -----------------------------------------------------------

@pytest.mark.parametrize("y_true, y_score, needle", [
    (np.ones((2, 3)), np.ones((3, 2)), "shape"),
    (np.ones(3), np.ones(3), "2-D"),
    (np.array([[1, 2]]), np.array([[0.1, 0.2]]), "0 and 1"),
    (np.array([[1, 0]]), np.array([[np.nan, 0.2]]), "non-finite"),
    (np.array([[1, 0]]), np.array([[np.inf, 0.2]]), "non-finite"),
    (np.zeros((2, 2)), np.ones((2, 2)), "no positive"),
])
def test_array_checks(y_true, y_score, needle):
    with pytest.raises(InputError, match=needle):
        lwlrap(y_true=y_true, y_score=y_score)


# ---- tables ---------------------------------------------------------------------------

SPECIES = ["s0", "s1", "s2"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    return write(tmp_path / "test_labels.csv",
                 "recording_id,s0,s1,s2\nr1,1,0,1\nr2,0,1,0\nr3,0,0,0\nr4,1,1,0\n")


PRED = "recording_id,s0,s1,s2\nr1,0.9,0.8,0.7\nr2,0.9,0.5,0.2\nr3,0.1,0.1,0.1\nr4,0.6,0.2,0.4\n"


def test_read_score_table_ok(tmp_path):
    p = write(tmp_path / "sub.csv", "recording_id, s1 ,s0\n r1 ,0.5,1\nr2,0,1e-3\n\n")
    df = read_score_table(path=p, species_columns=["s0", "s1"])
    assert list(df.columns) == ["recording_id", "s0", "s1"]
    assert list(df["recording_id"]) == ["r1", "r2"]
    assert df["s0"].tolist() == [1.0, 0.001]


@pytest.mark.parametrize("text, kind, species, needles", [
    ("", "submission", None, ["empty"]),
    ("recording_id,s0\n", "submission", None, ["no data rows"]),
    ("id,s0\nr1,0.5\n", "submission", None, ["recording_id"]),
    ("recording_id,s0\nr1,0.5\nr2,0.1\nr1,0.3\n", "submission", None, ["duplicate", "r1"]),
    ("recording_id,s0\nr1,0.5\n", "submission", SPECIES, ["missing species columns", "s1", "s2"]),
    ("recording_id,s0,s1,s2,extra\nr1,0.5,0.1,0.2,3\n", "submission", SPECIES, ["unexpected", "extra"]),
    ("recording_id,s0,bird\nr1,0.5,0.1\n", "submission", None, ["unexpected", "bird"]),
    ("recording_id,s0,s0\nr1,0.5,0.1\n", "submission", None, ["duplicate column", "s0"]),
    ("recording_id,s0,s1\nr1,0.5,abc\nr2,0.1,0.2\n", "submission", None, ["s1", "non-numeric", "line(s) 2", "abc"]),
    ("recording_id,s0,s1\nr1,0.5,0.1\nr2,,0.2\nr3,NaN,0.1\n", "submission", None, ["s0", "empty or NaN", "3, 4"]),
    ("recording_id,s0,s1\nr1,1.5,0.1\nr2,0.5,-0.1\n", "submission", None, ["outside [0, 1]", "s0", "s1", "2 (1.5)"]),
    ("recording_id,s0,s1\nr1,1,0\nr2,0.5,1\n", "truth", None, ["other than 0 or 1", "s0", "3 (0.5)"]),
    ("recording_id,s0\n,0.5\n", "submission", None, ["empty recording_id", "line"]),
])
def test_read_score_table_errors(tmp_path, text, kind, species, needles):
    p = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as err:
        read_score_table(path=p, species_columns=species, kind=kind)
    msg = str(err.value)
    assert str(p) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_read_score_table_missing_file_and_caps_offenders(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputError, match="not found") as err:
        read_score_table(path=missing)
    assert str(missing) in str(err.value)
    rows = "".join(f"r{i},{i}\n" for i in range(30))
    p = write(tmp_path / "many.csv", "recording_id,s0\n" + rows)
    with pytest.raises(InputError) as err:
        read_score_table(path=p)
    assert "r29" not in str(err.value) and "and 18 more" in str(err.value)
    with pytest.raises(InputError, match="kind"):
        read_score_table(path=p, kind="labels")


def test_evaluate_expected_scores_and_json(tmp_path, truth):
    pred = write(tmp_path / "sub.csv", PRED)
    rep = evaluate(truth_path=truth, pred_path=pred, threshold=0.5)
    assert isinstance(rep, EvaluationReport)
    # r1: ranks 1,3 -> 1, 2/3; r2: rank 2 -> 1/2; r4: s0 rank 1 -> 1, s1 rank 3 -> 2/3; r3 excluded.
    assert rep.lwlrap == pytest.approx((1 + 2 / 3 + 1 / 2 + 1 + 2 / 3) / 5)
    assert rep.n_recordings == 4 and rep.species == SPECIES
    assert list(rep.per_species.columns) == ["species", "positives", "ap", "lwlrap", "precision", "recall", "fpr"]
    y_true = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    y_score = pd.read_csv(pred)[SPECIES].to_numpy()
    assert rep.map == pytest.approx(mean_average_precision(y_true=y_true, y_score=y_score))
    assert rep.total_ap == pytest.approx(total_average_precision(y_true=y_true, y_score=y_score))
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert {"lwlrap", "map", "total_ap", "per_species", "threshold_stats"} <= set(d)
    assert set(d["per_species"]) == set(SPECIES)
    assert "total" in d["threshold_stats"] and "mean" in d["threshold_stats"]
    table = rep.format_table()
    assert "lwlrap" in table and "s2" in table and "total" in table


def test_evaluate_aligns_by_recording_id(tmp_path, truth):
    pred = write(tmp_path / "sub.csv", PRED)
    lines = PRED.splitlines()
    shuffled = write(tmp_path / "shuffled.csv", "\n".join([lines[0], lines[3], lines[1], lines[4], lines[2]]) + "\n")
    cols = write(tmp_path / "cols.csv", pd.read_csv(pred)[["s2", "recording_id", "s0", "s1"]].to_csv(index=False))
    base = evaluate(truth_path=truth, pred_path=pred)
    for other in (shuffled, cols):
        rep = evaluate(truth_path=truth, pred_path=other)
        assert rep.lwlrap == pytest.approx(base.lwlrap)
        assert rep.map == pytest.approx(base.map)


def test_evaluate_reports_missing_and_extra_ids(tmp_path, truth):
    pred = write(tmp_path / "sub.csv", PRED.replace("r2,", "zz9,"))
    with pytest.raises(InputError) as err:
        evaluate(truth_path=truth, pred_path=pred)
    msg = str(err.value)
    assert str(pred) in msg and "missing: r2" in msg and "zz9" in msg


def test_evaluate_species_columns_must_match_truth(tmp_path, truth):
    pred = write(tmp_path / "sub.csv", "recording_id,s0,s1\nr1,0.1,0.2\n")
    with pytest.raises(InputError, match="missing species columns: s2"):
        evaluate(truth_path=truth, pred_path=pred)


def test_youden_threshold_balances_misses_and_false_alarms():
    y_true = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    y_score = np.array([[0.35, 0.05], [0.4, 0.1], [0.2, 0.3], [0.1, 0.25]])
    # every present entry scores >= 0.3 and every absent one < 0.3, so J = 1 at 0.3
    assert youden_threshold(y_true=y_true, y_score=y_score) == pytest.approx(0.3)
    with pytest.raises(InputError, match="both present and absent"):
        youden_threshold(y_true=np.zeros((2, 2)), y_score=y_score[:2])


def test_bagged_youden_threshold_is_the_median_over_resampled_recordings():
    rng = np.random.default_rng(1)
    y_true = np.zeros((40, 3))
    y_true[:8, 0], y_true[8:16, 1], y_true[16:22, 2] = 1, 1, 1
    y_score = np.where(y_true == 1, rng.uniform(0.3, 0.9, y_true.shape), rng.uniform(0.0, 0.4, y_true.shape))
    bagged = youden_threshold(y_true=y_true, y_score=y_score, bootstrap=51, seed=3)
    assert bagged == youden_threshold(y_true=y_true, y_score=y_score, bootstrap=51, seed=3)  # reproducible
    # the median of 51 resamples' own choices, each a plain Youden threshold on resampled rows
    draws = np.random.default_rng(3)
    chosen = [youden_threshold(y_true=y_true[rows], y_score=y_score[rows])
              for rows in (draws.integers(0, 40, 40) for _ in range(51))]
    assert bagged == pytest.approx(np.median(chosen)) and 0.3 <= bagged <= 0.4
    # perfectly separated classes: any resample keeps J = 1 but chooses its own lowest present score
    separated = np.where(y_true == 1, 0.6 + 0.01 * np.arange(40)[:, None] / 40, 0.1)
    assert youden_threshold(y_true=y_true, y_score=separated, bootstrap=51) >= youden_threshold(y_true=y_true, y_score=separated)
