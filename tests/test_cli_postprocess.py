"""The postprocess and ensemble commands, and predict's post-processing options."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def pred(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(0.05, 0.95, size=(20, 3)), columns=["s0", "s1", "s2"])
    frame.insert(0, "recording_id", [f"r{i:02d}" for i in range(20)])
    path = tmp_path / "pred.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def prior(tmp_path):
    path = tmp_path / "prior.csv"
    path.write_text("species_id,prevalence\n0,0.9\n1,0.1\n2,0.02\n")
    return path


def test_postprocess_with_a_prior_writes_scores_and_sidecar(pred, prior, tmp_path):
    out = tmp_path / "new.csv"
    result = invoke("postprocess", "--pred", pred, "--out", out, "--prior", prior)
    assert result.exit_code == 0, result.output
    assert "prior table" in result.output and "s1: 0.100 x0.111" in result.output
    before, after = pd.read_csv(pred), pd.read_csv(out)
    assert after.recording_id.tolist() == before.recording_id.tolist()
    assert (after.s0 > before.s0).all() and (after.s2 < before.s2).all()
    sidecar = pd.read_csv(tmp_path / "new.priors.csv")
    assert sidecar.species_id.tolist() == [0, 1, 2] and sidecar.prevalence.tolist() == [0.9, 0.1, 0.02]
    assert sidecar.factor.tolist() == pytest.approx([9.0, 1 / 9, 0.02 / 0.98], rel=1e-5)


def test_postprocess_estimates_without_a_prior_and_uses_the_run_reference(pred, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "oof.csv").write_text("recording_id,fold,s0,s1,s2\na,0,0.2,0.4,0.5\nb,1,0.4,0.6,0.5\n")
    for extra in ([], ["--run", run], ["--estimate", "count", "--labels-per-recording", "1.2"], ["--factor", "2"]):
        out = tmp_path / "est.csv"
        result = invoke("postprocess", "--pred", pred, "--out", out, *extra)
        assert result.exit_code == 0, result.output
        assert pd.read_csv(out).shape == (20, 4) and (tmp_path / "est.priors.csv").is_file()
    assert "fixed factor 2" in result.output


def test_postprocess_errors_name_the_bad_file(pred, tmp_path):
    partial = tmp_path / "partial.csv"
    partial.write_text("species_id,prevalence\n0,0.5\n")
    result = invoke("postprocess", "--pred", pred, "--out", tmp_path / "o.csv", "--prior", partial)
    assert result.exit_code == 2 and "partial.csv: no value for species 1, 2" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.csv").exists()
    broken = tmp_path / "broken.csv"
    broken.write_text("recording_id,s0,s1\nr1,0.5,\n")
    result = invoke("postprocess", "--pred", broken, "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "broken.csv" in result.output and "empty or NaN" in result.output
    result = invoke("postprocess", "--pred", pred, "--out", tmp_path / "o.csv", "--run", tmp_path / "norun")
    assert result.exit_code == 2 and "norun/oof.csv: not found" in result.output


def test_ensemble_command(pred, tmp_path):
    other = tmp_path / "other.csv"
    frame = pd.read_csv(pred)
    frame.iloc[::-1].assign(s0=0.5).to_csv(other, index=False)
    out = tmp_path / "ens.csv"
    result = invoke("ensemble", pred, other, "--method", "mean", "--weights", "1,3", "--out", out)
    assert result.exit_code == 0, result.output
    combined = pd.read_csv(out)
    assert combined.recording_id.tolist() == frame.recording_id.tolist()
    assert combined.s0.to_numpy() == pytest.approx(0.25 * frame.s0.to_numpy() + 0.375, abs=1e-5)
    short = tmp_path / "short.csv"
    frame.head(5).to_csv(short, index=False)
    result = invoke("ensemble", pred, short, "--out", out)
    assert result.exit_code == 2 and "short.csv: 15 recording(s) of the first table missing" in result.output
    result = invoke("ensemble", pred, other, "--weights", "1,x", "--out", out)
    assert result.exit_code == 2 and "--weights must be numbers" in result.output


@pytest.fixture
def fake_predict(monkeypatch, tmp_path):
    """predict's post-processing options, without training a model: infer.predict returns fixed scores."""
    from dawnchorus import infer
    from dawnchorus.data.species import SpeciesTable

    submission = pd.DataFrame({"recording_id": ["a", "b"], "s0": [0.5, 0.4], "s1": [0.6, 0.3]})
    windows = submission.assign(t_start_s=0.0, t_end_s=1.0)
    species = SpeciesTable.from_ids([0, 1])
    monkeypatch.setattr(infer, "predict", lambda **kwargs: infer.Prediction(submission=submission, windows=windows, species=species))
    run = tmp_path / "run"
    run.mkdir()
    (run / "oof.csv").write_text("recording_id,fold,s0,s1\nx,0,0.5,0.5\n")
    return run, submission


def test_predict_applies_post_processing_only_when_asked(fake_predict, tmp_path):
    run, submission = fake_predict
    plain = tmp_path / "plain.csv"
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", plain)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(plain).s0.tolist() == submission.s0.tolist() and not (tmp_path / "plain.priors.csv").exists()
    prior = tmp_path / "prior.csv"
    prior.write_text("species_id,prevalence\n0,0.2\n1,0.8\n")
    scaled = tmp_path / "scaled.csv"
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", scaled, "--prior", prior)
    assert result.exit_code == 0, result.output
    assert "reference prior: 0.5" in result.output
    assert pd.read_csv(scaled).s0.tolist() == pytest.approx([0.2, 1 / 7], rel=1e-5)  # odds 2/3 times odds(0.2) = 1/4
    assert (tmp_path / "scaled.priors.csv").is_file()
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", scaled, "--postprocess")
    assert result.exit_code == 0 and "cc estimate" in result.output
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", scaled, "--prior", prior, "--no-postprocess")
    assert result.exit_code == 2 and "--prior only has an effect" in result.output


def test_estimated_priors_use_the_runs_classify_and_count_threshold(fake_predict, pred, tmp_path):
    run, _ = fake_predict
    out = tmp_path / "est.csv"
    for calibration, expected_s0 in ((None, 0.25), ('{"cc_threshold": 0.35}', 0.75)):  # s0 scores 0.5, 0.4
        if calibration:
            (run / "calibration.json").write_text(calibration)
        result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--postprocess")
        assert result.exit_code == 0, result.output
        assert pd.read_csv(tmp_path / "est.priors.csv").prevalence.tolist() == pytest.approx([expected_s0, 0.5])
    low, high = (invoke("postprocess", "--pred", pred, "--out", out, "--cc-threshold", t) for t in (0.2, 0.8))
    assert low.exit_code == 0 and high.exit_code == 0
    bad = invoke("postprocess", "--pred", pred, "--out", out, "--cc-threshold", 1.5)
    assert bad.exit_code == 2 and "--cc-threshold must be between 0 and 1" in bad.output


def test_estimated_priors_count_persistent_evidence_of_the_first_model(monkeypatch, tmp_path):
    from dawnchorus import infer
    from dawnchorus.config import load_preset, save_config
    from dawnchorus.data.species import SpeciesTable

    # s0: one loud window in a (a lone false alarm), two in b; s1: two windows over 0.5 in both
    windows = pd.DataFrame({"recording_id": list("aaabbb"), "t_start_s": [0.0, 1.0, 2.0] * 2, "t_end_s": [1.0, 2.0, 3.0] * 2,
                            "s0": [0.9, 0.1, 0.1, 0.8, 0.7, 0.1], "s1": [0.6, 0.6, 0.1, 0.7, 0.6, 0.1]})
    submission = infer.aggregate_windows(windows, species_columns=["s0", "s1"])
    calls = []

    def fake(**kwargs):
        calls.append(kwargs.get("pseudo_round"))
        return infer.Prediction(submission=submission, windows=windows, species=SpeciesTable.from_ids([0, 1]))

    monkeypatch.setattr(infer, "predict", fake)
    run = tmp_path / "run"
    (run / "fold0").mkdir(parents=True)
    (run / "fold0" / "model.safetensors").write_text("")
    save_config(load_preset("cpu-small"), run / "config.yaml")
    (run / "calibration.json").write_text('{"cc_threshold": 0.5, "persistence": {"windows": 2, "threshold": 0.5}}')
    out = tmp_path / "est.csv"
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--postprocess")
    assert result.exit_code == 0, result.output
    assert "2 best windows of the first model" in result.output and calls == [None]  # round 0's windows reused
    assert pd.read_csv(tmp_path / "est.priors.csv").prevalence.tolist() == pytest.approx([0.5, 0.75])  # 1 and 2 clamped to 1 - 0.5/n
    student = run / "pseudo" / "round1" / "fold0"
    student.mkdir(parents=True)
    (student / "model.safetensors").write_text("")
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--postprocess")
    assert result.exit_code == 0, result.output
    assert calls[1:] == [None, 0]  # the last round predicts, round 0 (the teacher) gives the evidence
    calls.clear()
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--postprocess", "--round", "0", "--hop-s", "0.5")
    assert result.exit_code == 0 and calls == [0, 0]  # other window settings than the calibration's: predicted again


def test_postprocess_can_estimate_on_another_table(pred, tmp_path):
    teacher = tmp_path / "teacher.csv"
    frame = pd.read_csv(pred)
    frame[["s0", "s1", "s2"]] = 0.1
    frame.loc[:4, "s1"] = 0.9  # 5 of 20 recordings
    frame.to_csv(teacher, index=False)
    out = tmp_path / "out.csv"
    result = invoke("postprocess", "--pred", pred, "--out", out, "--estimate-from", teacher, "--cc-threshold", 0.5)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "out.priors.csv").prevalence.tolist() == pytest.approx([0.025, 0.25, 0.025])  # 0 -> 0.5/n
    frame.iloc[:10].to_csv(teacher, index=False)
    result = invoke("postprocess", "--pred", pred, "--out", out, "--estimate-from", teacher)
    assert result.exit_code == 2 and "--estimate-from" in result.output and "must score each recording" in result.output


def test_predict_smooths_windows_before_aggregating_and_knows_the_host_prior(monkeypatch, tmp_path):
    from dawnchorus import infer
    from dawnchorus.config import load_preset, save_config
    from dawnchorus.data.species import SpeciesTable

    windows = pd.DataFrame({"recording_id": ["a"] * 3, "t_start_s": [0.0, 1.0, 2.0], "t_end_s": [1.0, 2.0, 3.0],
                            "s0": [0.0, 0.9, 0.0], "s1": [0.3, 0.3, 0.3]})
    submission = pd.DataFrame({"recording_id": ["a"], "s0": [0.9], "s1": [0.3]})
    monkeypatch.setattr(infer, "predict", lambda **kwargs: infer.Prediction(submission=submission, windows=windows,
                                                                            species=SpeciesTable.from_ids([0, 1])))
    run = tmp_path / "run"
    save_config(load_preset("cpu-small"), run / "config.yaml")
    out = tmp_path / "smoothed.csv"
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--smooth", "3", "--aggregate", "max")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).s0.tolist() == pytest.approx([0.45])  # the spike averaged with its neighbours
    result = invoke("predict", "--run", run, "--audio", tmp_path, "--out", out, "--prior", "rfcx-host-paper")
    assert result.exit_code == 2 and "species" in result.output  # the RFCx table does not fit a 2-species run
