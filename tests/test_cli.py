"""The command line: exact command forms, clear errors without tracebacks."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.cli import app

from conftest import LABEL_HEADER

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_validate_prints_a_summary(tiny_dataset):
    result = invoke("validate", "--data", tiny_dataset)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["train_recordings"] == 3 and summary["tp_boxes"] == 2 and summary["species"] == 3


def test_validate_reports_bad_rows_without_traceback(tiny_dataset):
    (tiny_dataset / "train_tp.csv").write_text(LABEL_HEADER + "rec_a,0,1,1,500,0.5,1500\nrec_a,9,1,1,500,1.5,1500\n")
    result = invoke("validate", "--data", tiny_dataset)
    assert result.exit_code == 2
    assert "line 2: t_min (1.0) must be less than t_max (0.5)" in result.output
    assert "line 3: unknown species_id 9" in result.output
    assert "Traceback" not in result.output
    dropped = invoke("validate", "--data", tiny_dataset, "--drop-bad-rows")
    assert dropped.exit_code == 0
    assert "warning: " in dropped.stderr and "(these rows were dropped)" in dropped.stderr
    assert json.loads(dropped.stdout)["tp_boxes"] == 0


def test_baseline_writes_a_submission_in_file_order(tiny_dataset, tmp_path):
    out = tmp_path / "sub.csv"
    result = invoke("baseline", "--data", tiny_dataset, "--out", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["recording_id", "s0", "s1", "s2"] and list(frame.recording_id) == ["tst_1", "tst_2"]
    # rec_a has a TP of species 0, rec_b of species 1, three labelled recordings in all.
    assert frame.loc[0, ["s0", "s1", "s2"]].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0], abs=1e-5)


def test_baseline_with_a_prior_table_and_a_bad_prior(tiny_dataset, tmp_path):
    prior = tmp_path / "prior.csv"
    prior.write_text("species_id,prevalence\n0,0.9\n1,0.1\n2,0.5\n")
    out = tmp_path / "sub.csv"
    assert invoke("baseline", "--data", tiny_dataset, "--out", out, "--prior", prior).exit_code == 0
    assert pd.read_csv(out).iloc[1, 1:].tolist() == [0.9, 0.1, 0.5]
    prior.write_text("species_id,prevalence\n0,1.5\n")
    result = invoke("baseline", "--data", tiny_dataset, "--out", out, "--prior", prior)
    assert result.exit_code == 2 and "line 2: prevalence 1.5 is not a fraction" in result.output


def test_raven_export_then_import(tiny_dataset, tmp_path):
    tables = tmp_path / "raven"
    result = invoke("raven", "export", tiny_dataset / "train_tp.csv", tiny_dataset / "train_fp.csv", "--out", tables)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tables.iterdir()) == [
        "rec_a.Table.1.selections.txt", "rec_b.Table.1.selections.txt", "rec_c.Table.1.selections.txt"]
    back = tmp_path / "back"
    result = invoke("raven", "import", tables, "--out", back)
    assert result.exit_code == 0, result.output
    original = pd.read_csv(tiny_dataset / "train_fp.csv").sort_values("recording_id").reset_index(drop=True)
    again = pd.read_csv(back / "train_fp.csv").sort_values("recording_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(original, again, check_dtype=False)


def test_cache_warm_and_prune(tiny_dataset, tmp_path):
    result = invoke("cache", "warm", "--audio", tiny_dataset / "train", "--cache", tmp_path / "c")
    assert result.exit_code == 0 and "3 recording(s) decoded" in result.output
    (tiny_dataset / "train" / "rec_c.wav").unlink()
    result = invoke("cache", "prune", "--cache", tmp_path / "c")
    assert result.exit_code == 0 and "removed 1 stale entry" in result.output


def test_missing_dataset_is_a_clear_error(tmp_path):
    result = invoke("validate", "--data", tmp_path / "nowhere")
    assert result.exit_code == 2 and "dataset directory not found" in result.output


def test_evaluate_prints_table_and_writes_json(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("recording_id,s0,s1,s2\na,1,0,0\nb,0,1,1\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("recording_id,s0,s1,s2\nb,0.1,0.9,0.8\na,0.7,0.2,0.1\n")
    result = invoke("evaluate", "--truth", truth, "--pred", pred, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["lwlrap"] == 1.0 and set(metrics["per_species"]) == {"s0", "s1", "s2"}


def test_evaluate_rejects_bad_submissions(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("recording_id,s0,s1\na,1,0\nb,0,1\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("recording_id,s0,s1\na,0.5,0.2\nc,0.1,0.3\n")
    result = invoke("evaluate", "--truth", truth, "--pred", pred)
    assert result.exit_code == 2 and "b" in result.output and "c" in result.output and "Traceback" not in result.output
    pred.write_text("recording_id,s0,s1\na,0.5,\nb,1.7,0.3\n")
    result = invoke("evaluate", "--truth", truth, "--pred", pred)
    assert result.exit_code == 2 and "pred.csv" in result.output and "s1" in result.output and "s0" in result.output


def test_archive_job_flags_are_shared_and_refused_without_a_job_folder(tiny_dataset, tmp_path):
    for command in ("predict", "embed", "index", "match"):
        shown = invoke(command, "--help").output
        assert all(flag in shown for flag in ("--chunk-s", "--retry-failed", "--ray-scorers", "--workers")), command
    templates = tmp_path / "templates.csv"
    templates.write_text(LABEL_HEADER + "rec_a,0,1,0.5,800,1.2,1200\n")
    refused = invoke("match", "--templates", templates, "--audio", tiny_dataset / "train", "--out", tmp_path / "c.csv",
                     "--chunk-s", "30", "--force")
    assert refused.exit_code == 2 and "--chunk-s, --force: only for job folders" in refused.output
    wrong = invoke("match", "--templates", templates, "--audio", tiny_dataset / "train", "--out", tmp_path / "job",
                   "--engine", "spark")
    assert wrong.exit_code == 2 and "--engine must be local or ray" in wrong.output and "Traceback" not in wrong.output
    local = invoke("match", "--templates", templates, "--audio", tiny_dataset / "train", "--out", tmp_path / "job",
                   "--ray-scorers", "2")
    assert local.exit_code == 2 and "need --engine ray" in local.output
