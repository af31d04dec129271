"""The archive engine on Ray Data (a local Ray with 2 CPUs): the same parts, outputs and failures
as the local engine, from the API and the CLI, and a job killed mid-way resumes to the same result."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="the Ray engine is the optional extra dawnchorus[ray] (installed with [dev])")

from dawnchorus.batch.engine import FAILED_FILE, RayOptions, read_parts, run_job  # noqa: E402
from dawnchorus.batch.jobs import match_archive  # noqa: E402
from dawnchorus.batch.scoring import WindowChunks  # noqa: E402
from dawnchorus.cli import app  # noqa: E402
from dawnchorus.templates import Template  # noqa: E402

from test_batch_engine import EnergyScorer, tone  # noqa: E402
from test_batch_jobs import trained  # noqa: E402,F401  (a fixture: a tiny CNN run and an archive)

CLI = str(Path(sys.executable).with_name("dawnchorus"))


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})  # the workers import the test scorers
    yield
    ray.shutdown()


def small_archive(root: Path) -> Path:
    archive = root / "archive"
    for i in range(7):
        tone(archive / f"site{i % 2}" / "20240401" / f"20240401_0{i}0000.wav", rate=16000, duration_s=2 + i, seed=i,
             freq_hz=800 + 300 * i)
    tone(archive / "site0" / "stereo.wav", rate=22050, duration_s=3, channels=2)
    (archive / "site1" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    return archive


def test_ray_engine_writes_what_the_local_engine_writes(tmp_path):
    archive = small_archive(tmp_path)
    local = run_job(command="predict", audio_root=archive, out_dir=tmp_path / "local", scorer=WindowChunks(EnergyScorer()),
                    settings={}, chunk_s=2.0)
    on_ray = run_job(command="predict", audio_root=archive, out_dir=tmp_path / "ray", scorer=WindowChunks(EnergyScorer()),
                     settings={}, chunk_s=2.0, ray=RayOptions(scorers=1))
    assert (on_ray.done_now, on_ray.failed) == (local.done_now, local.failed) == (8, 1)
    pd.testing.assert_frame_equal(read_parts(tmp_path / "local"), read_parts(tmp_path / "ray"))
    assert (tmp_path / "local" / FAILED_FILE).read_text() == (tmp_path / "ray" / FAILED_FILE).read_text()
    again = run_job(command="predict", audio_root=archive, out_dir=tmp_path / "ray", scorer=WindowChunks(EnergyScorer()),
                    settings={}, chunk_s=2.0)  # the same job folder, now on the local engine: everything is kept
    assert (again.done_now, again.done_before) == (0, 8)


def test_template_matching_on_ray_finds_the_same_candidates(tmp_path):
    archive = small_archive(tmp_path)
    template = Template(recording_id="site0/20240401/20240401_020000", species_id=0, songtype_id=1, t_min_s=0.5, t_max_s=1.5,
                        f_min_hz=1200, f_max_hz=1600, template_id="t")
    for name, options in (("local", None), ("ray", RayOptions())):
        match_archive(templates=[template], audio_root=archive, out_dir=tmp_path / name, ray=options)
    local, on_ray = (pd.read_csv(tmp_path / n / "candidates.csv") for n in ("local", "ray"))
    assert len(local) > 0
    pd.testing.assert_frame_equal(local, on_ray)


def test_cli_predict_on_ray_equals_the_local_engine(trained, tmp_path):
    corpus, run, archive = trained
    runner = CliRunner()
    outputs = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--ray-scorers", "1"])):
        result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(archive), "--out", str(tmp_path / name),
                                     "--format", "submission", "--device", "cpu", *extra])
        assert result.exit_code == 3, result.output  # the archive holds one broken file
        outputs[name] = pd.read_csv(tmp_path / name / "submission.csv")
    pd.testing.assert_frame_equal(outputs["local"], outputs["ray"], atol=1e-6)
    bad = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(archive), "--out", str(tmp_path / "x"),
                              "--ray-scorers", "2"])
    assert bad.exit_code == 2 and "need --engine ray" in bad.output


def test_a_ray_job_killed_mid_way_resumes_to_the_same_result(trained, tmp_path):
    corpus, run, archive = trained
    big = tmp_path / "archive"
    for copy in range(6):  # enough files that the kill lands part-way
        for path in sorted(archive.rglob("*.flac")):
            target = big / f"copy{copy}" / path.relative_to(archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    command = [CLI, "predict", "--run", str(run), "--audio", str(big), "--format", "submission", "--device", "cpu"]
    subprocess.run(command + ["--out", str(tmp_path / "reference")], check=True, capture_output=True)
    job = tmp_path / "killed"
    process = subprocess.Popen(command + ["--out", str(job), "--engine", "ray"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # its own group: the kill takes its Ray too
    journal, deadline = job / "journal.jsonl", time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal.is_file() and sum(1 for _ in journal.open()) >= 3:
            break
        time.sleep(0.05)
    finished_before_kill = sum(1 for _ in journal.open()) if journal.is_file() else 0
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < finished_before_kill < 36, finished_before_kill
    resumed = subprocess.run(command + ["--out", str(job), "--engine", "ray"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    kept = int(re.search(r"(\d+) done before", resumed.stdout).group(1))
    assert finished_before_kill <= kept < 36, resumed.stdout  # what was finished before the kill was not redone
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "reference" / "submission.csv"), pd.read_csv(job / "submission.csv"),
                                  atol=1e-6)


def test_a_gpu_actor_moves_the_drivers_cpu_copy_of_a_cnn_run_onto_its_device(trained):  # noqa: F811
    import torch

    from dawnchorus.infer import CnnScorer, load_run

    _, run_dir, _ = trained
    scorer = WindowChunks(CnnScorer(runs=[load_run(run_dir, device=torch.device("cpu"))], device=torch.device("cpu")))
    moved = scorer.to(torch.device("meta"))  # a device without data: enough to see every model went
    assert moved.scorer.device.type == "meta"
    assert all(p.device.type == "meta" for run in moved.scorer.runs for m in run.models for p in m.parameters())
    assert WindowChunks(EnergyScorer()).to(torch.device("meta")).scorer.sample_rate_hz  # nothing to move: unchanged
