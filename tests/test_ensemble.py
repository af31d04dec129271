"""Ensembling submissions: mean, rank mean and geometric mean, and clear mismatch errors."""

import math

import numpy as np
import pandas as pd
import pytest

from dawnchorus.ensemble import ensemble_tables
from dawnchorus.errors import InputError


def submission(ids, **columns):
    return pd.DataFrame({"recording_id": ids, **columns})


A = submission(["r1", "r2", "r3"], s0=[0.2, 0.4, 0.9], s1=[0.5, 0.1, 0.3])
B = submission(["r1", "r2", "r3"], s0=[0.8, 0.2, 0.1], s1=[0.5, 0.9, 0.3])


def test_weighted_mean():
    out = ensemble_tables(tables=[A, B], method="mean", weights=[1, 3])
    assert out.recording_id.tolist() == ["r1", "r2", "r3"] and list(out.columns) == ["recording_id", "s0", "s1"]
    assert out.s0.tolist() == pytest.approx([0.65, 0.25, 0.3])  # (1*a + 3*b) / 4
    assert out.s1.tolist() == pytest.approx([0.5, 0.7, 0.3])


def test_geometric_mean():
    out = ensemble_tables(tables=[A, B], method="geometric")
    assert out.s0.tolist() == pytest.approx([0.4, math.sqrt(0.08), 0.3])
    zero = submission(["r1", "r2", "r3"], s0=[0.0, 0.4, 0.9], s1=[0.5, 0.1, 0.3])
    clipped = ensemble_tables(tables=[zero, B], method="geometric")
    assert clipped.s0[0] == pytest.approx(math.sqrt(1e-6 * 0.8))  # log(0) clipped, not -inf


def test_rank_mean_scales_ranks_to_unit_interval():
    out = ensemble_tables(tables=[A, B], method="rank")
    # A's s0 ranks 1,2,3 -> 0, 0.5, 1; B's s0 ranks 3,2,1 -> 1, 0.5, 0
    assert out.s0.tolist() == pytest.approx([0.5, 0.5, 0.5])
    # A's s1 ranks 3,1,2 -> 1, 0, 0.5; B's s1 ranks 2,3,1 -> 0.5, 1, 0
    assert out.s1.tolist() == pytest.approx([0.75, 0.5, 0.25])
    tied = B.assign(s1=[0.5, 0.9, 0.5])  # ties share the mean rank: 1.5, 3, 1.5 -> 0.25, 1, 0.25
    assert ensemble_tables(tables=[A, tied], method="rank").s1.tolist() == pytest.approx([0.625, 0.5, 0.375])


def test_row_and_column_order_do_not_matter():
    shuffled = B.iloc[[2, 0, 1]][["s1", "recording_id", "s0"]]
    pd.testing.assert_frame_equal(ensemble_tables(tables=[A, shuffled]), ensemble_tables(tables=[A, B]))
    single = ensemble_tables(tables=[A])
    np.testing.assert_allclose(single[["s0", "s1"]].to_numpy(), A[["s0", "s1"]].to_numpy())


def test_mismatches_name_the_file():
    fewer = submission(["r1", "r2"], s0=[0.1, 0.2], s1=[0.3, 0.4])
    with pytest.raises(InputError, match=r"b\.csv: 1 recording\(s\) of the first table missing: r3"):
        ensemble_tables(tables=[A, fewer], sources=["a.csv", "b.csv"])
    other = submission(["r1", "r2", "r9"], s0=[0.1, 0.2, 0.3], s1=[0.3, 0.4, 0.5])
    with pytest.raises(InputError, match=r"b\.csv: .*missing: r3; 1 recording\(s\) not in the first table: r9"):
        ensemble_tables(tables=[A, other], sources=["a.csv", "b.csv"])
    wrong_species = B.rename(columns={"s1": "s2"})
    with pytest.raises(InputError, match=r"b\.csv: missing species column\(s\) s1; extra species column\(s\) s2"):
        ensemble_tables(tables=[A, wrong_species], sources=["a.csv", "b.csv"])
    twice = submission(["r1", "r1", "r3"], s0=[0.1, 0.2, 0.3], s1=[0.3, 0.4, 0.5])
    with pytest.raises(InputError, match="duplicate recording id.s. r1"):
        ensemble_tables(tables=[A, twice])


def test_bad_weights_and_method():
    with pytest.raises(InputError, match="1 weight.s. given for 2 table.s."):
        ensemble_tables(tables=[A, B], weights=[1.0])
    with pytest.raises(InputError, match="not negative"):
        ensemble_tables(tables=[A, B], weights=[1.0, -0.5])
    with pytest.raises(InputError, match="all zero"):
        ensemble_tables(tables=[A, B], weights=[0, 0])
    with pytest.raises(InputError, match="ensemble method 'median' is unknown"):
        ensemble_tables(tables=[A, B], method="median")
