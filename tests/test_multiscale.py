"""Per-class window lengths: chosen from held-out TP/FP boxes, applied per species column on the time grid."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.errors import InputError
from dawnchorus.infer import predict
from dawnchorus.multiscale import CLASS_WINDOWS_FILE, choose_class_windows, read_class_windows
from dawnchorus.train import train

from test_train_infer import corpus, fast_config  # noqa: F401  (module-scoped corpus fixture)


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):  # noqa: F811
    return train(data_dir=corpus, out_dir=tmp_path_factory.mktemp("run") / "run", config=fast_config("infer.aggregate=max"))


def test_each_column_takes_its_own_window_length(corpus, run):  # noqa: F811
    test_audio = corpus / "test"
    short = predict(run_dirs=[run], audio_dir=test_audio, device="cpu", window_s=0.75, frame_step_s=0.75)
    both = predict(run_dirs=[run], audio_dir=test_audio, device="cpu", extra_window_s=[0.75], frame_step_s=0.75)
    columns = short.species.columns
    everyone_short = predict(run_dirs=[run], audio_dir=test_audio, device="cpu", frame_step_s=0.75,
                             class_window_s={c: 0.75 for c in columns})
    np.testing.assert_allclose(everyone_short.windows[columns].to_numpy(), short.windows[columns].to_numpy(), rtol=1e-5, atol=1e-6)
    mixed = predict(run_dirs=[run], audio_dir=test_audio, device="cpu", frame_step_s=0.75, class_window_s={"s0": 0.75})
    np.testing.assert_allclose(mixed.windows["s0"], short.windows["s0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mixed.windows[columns[1:]].to_numpy(), both.windows[columns[1:]].to_numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(both.windows["s0"], short.windows["s0"])  # the choice changed something
    with pytest.raises(InputError, match="name column\\(s\\) s99"):
        predict(run_dirs=[run], audio_dir=test_audio, device="cpu", class_window_s={"s99": 0.75})


def test_choice_comes_from_held_out_boxes_and_feeds_predict(corpus, run, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="choose the lengths first"):
        read_class_windows(run)
    table = choose_class_windows(run_dir=run, data_dir=corpus, windows_s=[0.75, 3.0], device="cpu")
    assert (run / CLASS_WINDOWS_FILE).is_file()
    assert list(table.columns[:4]) == ["column", "window_s", "n_tp", "n_fp"] and {"auc_1.5", "auc_0.75", "auc_3"} <= set(table.columns)
    assert len(table) == 24 and set(table["window_s"]) <= {1.5, 0.75, 3.0}
    decided = table.dropna(subset=["auc_1.5"])
    assert len(decided) > 0 and (decided[["n_tp", "n_fp"]] > 0).all().all()
    for row in decided.itertuples():  # the chosen length has the best held-out AUC
        aucs = {w: table.loc[row.Index, f"auc_{w:g}"] for w in (1.5, 0.75, 3.0)}
        assert aucs[row.window_s] == max(a for a in aucs.values() if a == a)
    assert (table.loc[table["auc_1.5"].isna(), "window_s"] == 1.5).all()  # undecided: the run's own window
    assert read_class_windows(run) == dict(zip(table["column"], table["window_s"]))

    runner = CliRunner()
    result = runner.invoke(app, ["scales", "--run", str(run), "--data", str(corpus), "--window-s", "0.75", "--device", "cpu"])
    assert result.exit_code == 0 and "wrote" in result.output, result.output
    out = tmp_path / "sub.csv"
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(out),
                                 "--class-windows", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).shape == (3, 25)
    (run / CLASS_WINDOWS_FILE).write_text("column,window_s\ns0,-1\n")
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(out),
                                 "--class-windows", "--device", "cpu"])
    assert result.exit_code == 2 and "window_s must be positive" in result.output
