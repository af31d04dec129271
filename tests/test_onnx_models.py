"""ONNX export: the graph (front end, every fold, song types folded) scores real windows as the
torch runs do, to 1e-4, from the API, `dawnchorus export` and `predict --runtime onnx`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

ort = pytest.importorskip("onnxruntime")

from dawnchorus.cli import app  # noqa: E402
from dawnchorus.data.audio import load_audio  # noqa: E402
from dawnchorus.errors import InputError  # noqa: E402
from dawnchorus.infer import CnnScorer, load_run  # noqa: E402
from dawnchorus.onnx_models import (  # noqa: E402
    ONNX_FILE, OnnxScorer, export_onnx, frontend_path, onnx_for_runs, read_onnx_metadata,
)
from dawnchorus.train import train  # noqa: E402

from test_train_infer import corpus, fast_config  # noqa: E402,F401  (corpus is a fixture)

REAL = Path(__file__).parent / "data" / "real" / "tfk-audio-environment"
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    two_folds = train(data_dir=corpus, out_dir=root / "species", config=fast_config("train.train_folds=[0,1]"))
    songtypes = train(data_dir=corpus, out_dir=root / "songtypes", config=fast_config("model.classes=songtype"))
    for run_dir in (two_folds, songtypes):
        onnx_for_runs([run_dir])  # RUN/model.onnx, exported once for the tests below
    return two_folds, songtypes


def real_windows(rate: int, window_s: float, count: int = 12) -> np.ndarray:
    """Windows of real field recordings (a forest soundscape), resampled to the run's rate."""
    window = int(round(window_s * rate))
    samples = np.concatenate([load_audio(p, sample_rate_hz=rate) for p in sorted(REAL.glob("*.wav"))])
    starts = np.linspace(0, samples.size - window, count).astype(int)
    return np.stack([samples[s : s + window] for s in starts]).astype(np.float32)


@pytest.mark.parametrize("which", [0, 1], ids=["two folds", "song types folded"])
def test_exported_graph_scores_real_windows_as_torch_does(runs, tmp_path, which):
    run_dir = runs[which]
    path = Path(run_dir) / ONNX_FILE
    meta = read_onnx_metadata(path)
    run = load_run(run_dir, device=torch.device("cpu"))
    assert meta["species_columns"] == run.species.columns and meta["sample_rate_hz"] == run.config.features.sample_rate_hz
    windows = real_windows(meta["sample_rate_hz"], meta["window_s"])
    expected = CnnScorer(runs=[run], device=torch.device("cpu")).score(windows)
    got = OnnxScorer(model_path=path).score(windows)
    assert got.shape == expected.shape == (len(windows), len(run.species))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    front = ort.InferenceSession(str(frontend_path(path)), providers=["CPUExecutionProvider"])  # the portable chain: no torch
    network = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = front.run(None, {"windows": windows})[0]
    np.testing.assert_allclose(network.run(None, {"images": images})[0], expected, atol=1e-4, rtol=0)
    assert OnnxScorer(model_path=path).score(windows[:1]).shape == (1, len(run.species))  # any batch size


def test_two_runs_export_into_one_ensemble_graph(runs, tmp_path):
    _, first = runs
    second = tmp_path / "copy"
    shutil.copytree(first, second)
    path = export_onnx(run_dirs=[first, second], out_path=tmp_path / "both.onnx")
    meta = read_onnx_metadata(path)
    loaded = [load_run(r, device=torch.device("cpu")) for r in (first, second)]
    windows = real_windows(meta["sample_rate_hz"], meta["window_s"], count=4)
    np.testing.assert_allclose(OnnxScorer(model_path=path).score(windows),
                               CnnScorer(runs=loaded, device=torch.device("cpu")).score(windows), atol=1e-4, rtol=0)
    assert len(meta["weights"]) == 2  # one fold of each run


def test_cli_export_and_predict_with_the_onnx_runtime(runs, corpus, tmp_path):
    run_dir, _ = runs
    result = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0 and "'images' -> 'scores'" in result.output, result.output
    assert (tmp_path / "m.frontend.onnx").is_file()
    outputs = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        result = runner.invoke(app, ["predict", "--run", str(run_dir), "--audio", str(corpus / "test"), "--out", str(out),
                                     "--device", "cpu", "--runtime", runtime])
        assert result.exit_code == 0, result.output
        outputs[runtime] = pd.read_csv(out)
    pd.testing.assert_frame_equal(outputs["torch"], outputs["onnx"], atol=1e-4, check_exact=False)
    job = tmp_path / "job"
    result = runner.invoke(app, ["predict", "--run", str(run_dir), "--audio", str(corpus / "test"), "--out", str(job),
                                 "--runtime", "onnx", "--format", "submission"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(job / "submission.csv").sort_values("recording_id").reset_index(drop=True),
                                  outputs["torch"].sort_values("recording_id").reset_index(drop=True), atol=1e-4, check_exact=False)


def test_a_stale_or_foreign_onnx_file_is_replaced_or_refused(runs, tmp_path):
    run_dir = Path(shutil.copytree(runs[1], tmp_path / "run"))  # a copy keeps its export: digests are per fold
    path = onnx_for_runs([run_dir])
    stamp = path.stat().st_mtime_ns
    assert onnx_for_runs([run_dir]).stat().st_mtime_ns == stamp  # up to date: kept
    weights = Path(run_dir) / "fold0" / "model.safetensors"
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}, str(weights))
    assert onnx_for_runs([run_dir]).stat().st_mtime_ns != stamp  # new weights: exported again
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        OnnxScorer(model_path=tmp_path / "x.onnx")
    with pytest.raises(InputError, match="one run"):
        onnx_for_runs([run_dir, run_dir])
