"""Prior-aware post-processing (postprocess) and test-prevalence estimation (priors): scalings, estimators, the top-level call, smoothing."""

import numpy as np
import pandas as pd
import pytest

from dawnchorus.errors import InputError
from dawnchorus.metrics import lwlrap
from dawnchorus.postprocess import (
    linear_scale,
    postprocess,
    power_scale,
    read_prior_table,
    reference_from_run,
    smooth_windows,
)
from dawnchorus.priors import estimate_prevalence_cc, estimate_prevalence_count, estimate_prevalence_em, odds_scale


def calibrated_scores(prevalences, *, n=3000, separation=1.0, seed=0):
    """Labels drawn at ``prevalences``; scores are exact posteriors for a prior of 0.5.

    Each species' evidence x is N(+separation, 1) when present and N(-separation, 1) when
    absent, so the likelihood ratio is exp(2 * separation * x) and the balanced posterior
    is its logistic: what a detector trained on balanced TP/FP crops should output.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(prevalences))) < np.asarray(prevalences)).astype(int)
    evidence = rng.normal(np.where(labels == 1, separation, -separation), 1.0)
    return labels, 1 / (1 + np.exp(-2 * separation * evidence))


def table(scores, ids=None):
    frame = pd.DataFrame(scores, columns=[f"s{k}" for k in (ids or range(scores.shape[1]))])
    frame.insert(0, "recording_id", [f"r{i}" for i in range(len(frame))])
    return frame


def test_odds_scale_identity_known_values_and_monotone():
    p = np.array([[0.01, 0.2, 0.5], [0.3, 0.9, 0.999]])
    np.testing.assert_allclose(odds_scale(p, np.ones(3)), p, atol=1e-9)
    # p=0.5 has odds 1, times 3 is odds 3 -> 0.75; p=0.2 has odds 1/4, times 4 -> 0.5
    np.testing.assert_allclose(odds_scale(np.array([[0.5, 0.2]]), np.array([3.0, 4.0])), [[0.75, 0.5]])
    grid = np.linspace(0, 1, 101)[:, None].repeat(2, axis=1)
    scaled = odds_scale(grid, np.array([0.05, 20.0]))
    assert (np.diff(scaled, axis=0) >= 0).all() and ((scaled > 0) & (scaled < 1)).all()


def test_linear_and_power_scales():
    p = np.array([[0.5, 0.8]])
    np.testing.assert_allclose(linear_scale(p, np.array([0.5, 2.0])), [[0.25, 1.0]])  # clipped at 1
    np.testing.assert_allclose(power_scale(p, np.array([0.25, 1.0]), gamma=0.5), [[0.25, 0.8]])


def test_em_recovers_a_known_prevalence_from_calibrated_scores():
    labels, scores = calibrated_scores([0.1, 0.4], n=4000)
    found = estimate_prevalence_em(scores, np.array([0.5, 0.5]))
    assert found.converged
    assert found.prevalence == pytest.approx(labels.mean(axis=0), abs=0.02)
    assert found.adjusted.mean(axis=0) == pytest.approx(found.prevalence, abs=1e-4)


def test_classify_and_count_survives_overconfident_scores():
    labels, scores = calibrated_scores([0.1, 0.5, 0.9], n=4000, separation=2.0)
    overconfident = scores ** 0.25  # what a max over many windows does to absent species' scores
    found = estimate_prevalence_cc(overconfident ** 4, np.full(3, 0.5))
    assert found.prevalence == pytest.approx(labels.mean(axis=0), abs=0.03)
    by_em = estimate_prevalence_em(overconfident, np.full(3, 0.5)).prevalence
    by_cc = estimate_prevalence_cc(overconfident, np.full(3, 0.5), threshold=0.5 ** 0.25).prevalence
    true = labels.mean(axis=0)
    assert np.abs(by_cc - true).max() < 0.03 < np.abs(by_em - true).max()


def test_count_matching_hits_the_target_count_and_recovers_prevalences():
    prevalences = [0.05, 0.2, 0.6, 0.9]
    labels, scores = calibrated_scores(prevalences, n=4000, separation=1.5)
    found = estimate_prevalence_count(scores, np.full(4, 0.5), labels_per_recording=labels.sum(axis=1).mean())
    assert found.prevalence.sum() == pytest.approx(labels.sum(axis=1).mean(), abs=1e-4)
    assert found.prevalence == pytest.approx(labels.mean(axis=0), abs=0.03)
    with pytest.raises(InputError, match="between 0 and the number of species"):
        estimate_prevalence_count(scores, np.full(4, 0.5), labels_per_recording=5)


def test_degenerate_species_are_clamped_with_a_warning_naming_them():
    scores = np.column_stack([np.zeros(100), (np.arange(100) < 30).astype(float), np.full(100, 0.5)])
    with pytest.warns(UserWarning, match="s0"):
        found = estimate_prevalence_em(scores, np.full(3, 0.5), columns=["s0", "s1", "s2"])
    assert found.prevalence[0] == pytest.approx(0.005)  # never predicted: the floor, half a recording
    assert found.prevalence[1] == pytest.approx(0.3, abs=1e-3)  # hard 0/1 scores: the fraction of ones
    assert np.isfinite(found.adjusted).all()
    with pytest.warns(UserWarning) as caught:
        estimate_prevalence_em(scores, np.full(3, 0.5), columns=["s0", "s1", "s2"], max_iter=1)
    assert any("did not converge in 1 iterations (still moving: s0, s1)" in str(w.message) for w in caught)


def test_prior_table_scaling_raises_lwlrap_when_test_prevalence_differs():
    prevalences = [0.9, 0.5, 0.2, 0.1, 0.05, 0.02]
    labels, scores = calibrated_scores(prevalences, n=1500, separation=0.8, seed=3)
    raw = lwlrap(y_true=labels, y_score=scores)
    frame = table(scores)
    with_prior = postprocess(scores=frame, prior=dict(enumerate(prevalences)))
    estimated = postprocess(scores=frame, estimate="em")
    assert lwlrap(y_true=labels, y_score=with_prior.scores.iloc[:, 1:].to_numpy()) > raw + 0.05
    # on calibrated scores, EM alone comes close to knowing the prior
    assert lwlrap(y_true=labels, y_score=estimated.scores.iloc[:, 1:].to_numpy()) > raw + 0.04
    assert estimated.species.prevalence.to_numpy() == pytest.approx(labels.mean(axis=0), abs=0.05)


def test_postprocess_factors_from_prior_reference_and_fixed_factor():
    frame = table(np.array([[0.5, 0.5], [0.2, 0.9]]), ids=[3, 7])
    result = postprocess(scores=frame, prior={3: 0.2, 7: 0.5})
    # reference 0.5 -> the odds factor is odds(prior)
    assert result.species.factor.tolist() == pytest.approx([0.25, 1.0])
    # 0.2 has odds 0.25; times 0.25 is 0.0625, back to 0.0625 / 1.0625
    assert result.scores.s3.tolist() == pytest.approx([0.2, 0.0625 / 1.0625])
    assert result.scores.recording_id.tolist() == ["r0", "r1"]
    with_ref = postprocess(scores=frame, prior={3: 0.2, 7: 0.5}, reference={3: 0.2, 7: 0.8})
    assert with_ref.species.factor.tolist() == pytest.approx([1.0, 0.25])
    fixed = postprocess(scores=frame, factor=2.0)
    assert fixed.species.factor.tolist() == [2.0, 2.0] and fixed.species.prevalence.isna().all()
    power = postprocess(scores=frame, prior={3: 0.2, 7: 0.8}, method="power")
    # same ranking as p * prior**0.5: factors (0.4, 1.6)**0.5, divided by the largest
    assert power.species.factor.tolist() == pytest.approx([0.5, 1.0])
    assert (power.scores[["s3", "s7"]].to_numpy() <= 1).all()


def test_postprocess_rejects_bad_input_naming_the_problem():
    frame = table(np.array([[0.5, 0.5], [0.2, 0.9]]))
    with pytest.raises(InputError, match="no value for species 1"):
        postprocess(scores=frame, prior={0: 0.2})
    with pytest.raises(InputError, match="species 5 not among the score columns"):
        postprocess(scores=frame, prior={0: 0.2, 1: 0.3, 5: 0.1})
    with pytest.raises(InputError, match="values of species 1 are not strictly between 0 and 1"):
        postprocess(scores=frame, prior={0: 0.2, 1: 1.0})
    broken = frame.assign(s1=[0.5, np.nan])
    with pytest.raises(InputError, match="my.csv: species column.s. s1 hold NaN"):
        postprocess(scores=broken, source="my.csv")
    with pytest.raises(InputError, match="scaling 'softmax' is unknown"):
        postprocess(scores=frame, method="softmax")
    with pytest.raises(InputError, match="estimator 'magic' is unknown"):
        postprocess(scores=frame, estimate="magic")
    with pytest.raises(InputError, match="not both"):
        postprocess(scores=frame, prior={0: 0.2, 1: 0.3}, factor=2.0)


def test_prior_and_reference_files(tmp_path):
    path = tmp_path / "prior.csv"
    path.write_text("species_id,prevalence\n0,0.1\n")
    with pytest.raises(InputError, match=r"prior\.csv: no value for species 1"):
        read_prior_table(path, columns=["s0", "s1"])
    (tmp_path / "oof.csv").write_text("recording_id,fold,s0,s1\na,0,0.2,0.4\nb,1,0.4,0.8\n")
    assert reference_from_run(tmp_path) == pytest.approx({0: 0.3, 1: 0.6})
    with pytest.raises(InputError, match=r"oof\.csv: no value for species 2"):
        reference_from_run(tmp_path, columns=["s0", "s1", "s2"])
    with pytest.raises(InputError, match="not found"):
        reference_from_run(tmp_path / "missing")


def windows_table():
    # recording b is listed first and out of time order, to check both are handled
    return pd.DataFrame({
        "recording_id": ["b", "b", "a", "a", "a", "a", "a"],
        "t_start_s": [1.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0],
        "t_end_s": [2.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "s0": [0.0, 0.6, 0.1, 0.1, 0.9, 0.1, 0.1],
        "s1": [0.5, 0.5, 0.2, 0.4, 0.6, 0.8, 1.0],
    })


def test_smoothing_keeps_keys_and_damps_an_isolated_spike():
    windows = windows_table()
    mean = smooth_windows(windows, length=3)
    pd.testing.assert_frame_equal(mean[["recording_id", "t_start_s", "t_end_s"]],
                                  windows[["recording_id", "t_start_s", "t_end_s"]])
    assert mean.s0.tolist()[2:] == pytest.approx([0.1, 11 / 30, 11 / 30, 11 / 30, 0.1])
    assert mean.s0.tolist()[:2] == pytest.approx([0.3, 0.3])  # b's two windows only, nothing from a
    median = smooth_windows(windows, length={"s0": 3}, method="median")
    assert median.s0.tolist()[2:] == pytest.approx([0.1] * 5)  # the spike is gone
    assert median.s1.tolist() == windows.s1.tolist()  # columns not named are left alone


def test_smoothing_rejects_bad_lengths():
    with pytest.raises(InputError, match="s9"):
        smooth_windows(windows_table(), length={"s9": 3})
    with pytest.raises(InputError, match="s0=0"):
        smooth_windows(windows_table(), length={"s0": 0})
    with pytest.raises(InputError, match="missing key column"):
        smooth_windows(windows_table().drop(columns="t_end_s"))


def test_classify_and_count_threshold_comes_from_the_run(tmp_path):
    from dawnchorus.priors import threshold_from_run

    assert threshold_from_run(tmp_path) == 0.5  # a run without calibration.json
    (tmp_path / "calibration.json").write_text('{"cc_threshold": 0.25}')
    assert threshold_from_run(tmp_path) == 0.25
    scores = table(np.array([[0.3, 0.1], [0.2, 0.4], [0.1, 0.1], [0.35, 0.1]]))
    at_half = postprocess(scores=scores, estimate="cc").species.prevalence.to_numpy()
    at_run = postprocess(scores=scores, estimate="cc", cc_threshold=0.25).species.prevalence.to_numpy()
    assert at_run == pytest.approx([0.5, 0.25]) and at_half == pytest.approx([0.125, 0.125])  # 0 clamped to 0.5/n
    with pytest.raises(InputError, match="cc_threshold must be between 0 and 1"):
        postprocess(scores=scores, estimate="cc", cc_threshold=1.0)
    for broken in ('{"cc_threshold": 1.5}', "not json"):
        (tmp_path / "calibration.json").write_text(broken)
        with pytest.raises(InputError, match="calibration.json"):
            threshold_from_run(tmp_path)


def test_prevalence_can_be_counted_on_another_table_of_the_same_recordings(tmp_path):
    from dawnchorus.priors import persistence_from_run

    scores = table(np.array([[0.9, 0.9], [0.8, 0.1], [0.7, 0.1], [0.6, 0.1]]))
    evidence = scores.iloc[::-1].copy()  # row order does not matter, recordings do
    evidence[["s0", "s1"]] = [[0.1, 0.1], [0.6, 0.1], [0.1, 0.1], [0.6, 0.6]]  # reversed: r3, r2, r1, r0
    result = postprocess(scores=scores, estimate="cc", estimate_from=evidence, cc_threshold=0.5)
    assert result.species.prevalence.tolist() == pytest.approx([0.5, 0.25])  # counted on evidence, not on scores
    assert postprocess(scores=scores, estimate="cc", cc_threshold=0.5).species.prevalence.tolist() == pytest.approx([1 - 0.125, 0.25])
    with pytest.raises(InputError, match="must score each recording"):
        postprocess(scores=scores, estimate="cc", estimate_from=evidence.iloc[:3])
    with pytest.raises(InputError, match="species columns"):
        postprocess(scores=scores, estimate="cc", estimate_from=evidence.drop(columns="s1"))
    with pytest.raises(InputError, match="no use with a prior table"):
        postprocess(scores=scores, prior={0: 0.1, 1: 0.2}, estimate_from=evidence)

    assert persistence_from_run(tmp_path) is None
    (tmp_path / "calibration.json").write_text('{"cc_threshold": 0.25, "persistence": {"windows": 3, "threshold": 0.15}}')
    assert persistence_from_run(tmp_path) == (3, 0.15)
    for broken in ('{"persistence": {"windows": 0, "threshold": 0.15}}', '{"persistence": {"windows": 3, "threshold": 2}}',
                   '{"persistence": 3}', "[1, 2]"):
        (tmp_path / "calibration.json").write_text(broken)
        with pytest.raises(InputError, match="calibration.json"):
            persistence_from_run(tmp_path)


def test_adjusted_classify_and_count_undoes_the_detectors_misses_and_false_alarms():
    from dawnchorus.priors import estimate_prevalence_acc

    rng = np.random.default_rng(0)
    truth = np.array([0.9, 0.3, 0.05])
    present = rng.random((4000, 3)) < truth
    # a detector that finds 60 % of presences and raises a false alarm in 10 % of absences
    passed = np.where(present, rng.random(present.shape) < 0.6, rng.random(present.shape) < 0.1)
    scores = np.where(passed, 0.8, 0.2)
    counted = estimate_prevalence_cc(scores, np.full(3, 0.5), threshold=0.5).prevalence
    adjusted = estimate_prevalence_acc(scores, np.full(3, 0.5), threshold=0.5, rates=(0.6, 0.1)).prevalence
    assert np.abs(counted - truth).max() > 0.3  # the very common species collapses under plain counting
    assert adjusted == pytest.approx(truth, abs=0.03)
    with pytest.raises(InputError, match="tpr"):
        estimate_prevalence_acc(scores, np.full(3, 0.5), rates=None)
    with pytest.raises(InputError, match="fpr < tpr"):
        estimate_prevalence_acc(scores, np.full(3, 0.5), rates=(0.1, 0.2))
    through = postprocess(scores=table(scores[:8]), estimate="acc", cc_threshold=0.5, cc_rates=(0.6, 0.1))
    assert through.species.prevalence.between(0, 1).all() and "acc estimate" in through.source


def test_persistence_rates_are_read_from_the_run_and_checked(tmp_path):
    from dawnchorus.priors import persistence_rates_from_run

    assert persistence_rates_from_run(tmp_path) is None
    (tmp_path / "calibration.json").write_text('{"persistence": {"windows": 3, "threshold": 0.2}}')
    assert persistence_rates_from_run(tmp_path) is None  # trained before the rates were kept
    (tmp_path / "calibration.json").write_text('{"persistence": {"windows": 3, "threshold": 0.2, "tpr": 0.7, "fpr": 0.05}}')
    assert persistence_rates_from_run(tmp_path) == (0.7, 0.05)
    for broken in ('"tpr": 0.1, "fpr": 0.3', '"tpr": "high", "fpr": 0.1', '"tpr": 1.5, "fpr": 0.1'):
        (tmp_path / "calibration.json").write_text('{"persistence": {"windows": 3, "threshold": 0.2, ' + broken + '}}')
        with pytest.raises(InputError, match="calibration.json"):
            persistence_rates_from_run(tmp_path)


def test_estimated_prior_options_pick_the_default_and_fall_back_without_rates(tmp_path):
    from dawnchorus.priors import DEFAULT_ESTIMATE, estimated_prior_options

    evidence = (table(np.array([[0.9, 0.1]])), 3, 0.2)
    assert estimated_prior_options(tmp_path, None) == {"estimate": "cc", "cc_threshold": 0.5}  # no calibration.json
    options = estimated_prior_options(tmp_path, evidence)
    assert options["estimate"] == DEFAULT_ESTIMATE and options["cc_threshold"] == 0.2 and options["estimate_from"] is evidence[0]
    assert estimated_prior_options(tmp_path, evidence, estimate="acc")["estimate"] == "cc"  # a run that kept no rates
    (tmp_path / "calibration.json").write_text('{"persistence": {"windows": 3, "threshold": 0.2, "tpr": 0.7, "fpr": 0.05}}')
    assert estimated_prior_options(tmp_path, evidence, estimate="acc")["cc_rates"] == (0.7, 0.05)
