"""Closing the loop (issue 5): templates -> candidates -> review decisions -> labels -> training."""

import pandas as pd
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.data import load_dataset
from dawnchorus.review.db import open_db, record_decision, store_candidates
from dawnchorus.synth import SynthConfig, generate_corpus

from test_train_infer import FAST


def overlaps_a_call(candidates: pd.DataFrame, calls: pd.DataFrame) -> list[bool]:
    """The stand-in reviewer: TP when the candidate overlaps a true call of its species."""
    verdicts = []
    for row in candidates.itertuples():
        same = calls[(calls.recording_id == row.recording_id) & (calls.species_id == row.species_id)]
        verdicts.append(bool(((same.t_min < row.t_max) & (same.t_max > row.t_min)).any()))
    return verdicts


def test_mined_and_reviewed_candidates_become_training_labels(tmp_path):
    corpus = tmp_path / "corpus"
    generate_corpus(out_dir=corpus, config=SynthConfig(n_train=8, n_test=3, duration_s=6.0, seed=9, workers=1))
    runner = CliRunner()
    # One template per species: its first TP box.
    original_tp = pd.read_csv(corpus / "train_tp.csv")
    original_tp.drop_duplicates("species_id").to_csv(tmp_path / "templates.csv", index=False)
    result = runner.invoke(app, ["match", "--templates", str(tmp_path / "templates.csv"), "--audio", str(corpus / "train"),
                                 "--out", str(tmp_path / "candidates.csv"), "--top-n", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    candidates = pd.read_csv(tmp_path / "candidates.csv")
    assert len(candidates) > 0

    calls = pd.read_csv(corpus / "truth" / "events.csv").query("split == 'train' and kind == 'call'")
    verdicts = overlaps_a_call(candidates, calls)
    with open_db(tmp_path / "review.sqlite") as connection:
        ids = store_candidates(connection, candidates.to_dict("records"))
        for candidate_id, is_call in zip(ids, verdicts):
            record_decision(connection, candidate_id=candidate_id, decision="tp" if is_call else "fp", reviewer="truth")
    result = runner.invoke(app, ["review", "export", "--db", str(tmp_path / "review.sqlite"), "--out", str(corpus)])
    assert result.exit_code == 0, result.output

    dataset = load_dataset(corpus, require_labels=True)  # the merged files validate against the audio
    assert len(dataset.tp) >= len(original_tp) and len(dataset.tp) + len(dataset.fp) > len(original_tp)
    keys = [(b.recording_id, b.species_id, b.t_min_s, b.t_max_s, b.label) for b in dataset.boxes]
    assert len(keys) == len(set(keys))  # merged without duplicates

    sets = [arg for item in FAST for arg in ("--set", item)]
    result = runner.invoke(app, ["train", "--data", str(corpus), "--out", str(tmp_path / "run"), "--preset", "cpu-small", *sets])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "run"), "--audio", str(corpus / "test"),
                                 "--out", str(tmp_path / "sub.csv")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "--truth", str(corpus / "truth" / "test_labels.csv"), "--pred", str(tmp_path / "sub.csv")])
    assert result.exit_code == 0 and "lwlrap" in result.output.lower()
