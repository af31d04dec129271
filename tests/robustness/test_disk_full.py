"""Full disks and unwritable folders during train, predict, embed and review export: a clear
error naming the path, nothing finished is lost, and the same command goes on once there is room.

The real case runs the CLI on a small tmpfs inside a user mount namespace (``unshare -rm``);
where the machine forbids that, the injected failures below still cover every write path."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus import atomic
from dawnchorus.cli import app
from dawnchorus.config import load_preset, with_overrides
from dawnchorus.errors import OutputError
from dawnchorus.review import db as review_db
from dawnchorus.review import export_labels
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.train import train

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from test_batch_jobs import FAST  # noqa: E402

TWO_FOLDS = [o for o in FAST if not o.startswith("train.train_folds")] + ["train.train_folds=[0,1]"]
CLI = [str(Path(sys.executable).with_name("dawnchorus"))]
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full")
    generate_corpus(out_dir=root / "corpus", config=SynthConfig(n_train=6, n_test=4, duration_s=4.0, seed=3, workers=1))
    return root / "corpus"


def _disk_full_after(monkeypatch, successes: int, *, error: int = errno.ENOSPC) -> list[Path]:
    """Make the atomic writers' rename fail once ``successes`` files were written; returns the files written."""
    written, real_replace = [], atomic.os.replace

    def replace(source, target):
        if len(written) >= successes:
            raise OSError(error, os.strerror(error))
        written.append(Path(target))
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    return written


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


def test_training_on_a_full_disk_stops_naming_the_file_and_resumes_once_there_is_room(corpus, tmp_path, monkeypatch):
    config = with_overrides(load_preset("cpu-small"), TWO_FOLDS)
    writes = _disk_full_after(monkeypatch, successes=10**9)  # only counts, to find where the first fold finishes
    reference = train(data_dir=corpus, out_dir=tmp_path / "reference", config=config)
    first_fold_done = [p.relative_to(reference).as_posix() for p in writes].index("fold0/model.safetensors") + 1
    monkeypatch.undo()
    run = tmp_path / "run"
    written = _disk_full_after(monkeypatch, successes=first_fold_done + 2)
    with pytest.raises(OutputError, match=r"No space left on device.*--resume") as error:
        train(data_dir=corpus, out_dir=run, config=config)
    assert str(run) in str(error.value)
    _no_temporaries(run)
    kept = {p: p.stat().st_mtime_ns for p in written if p.is_file() and p.name == "model.safetensors"}
    assert len(kept) == 1  # the disk filled up during the second fold
    monkeypatch.undo()
    train(data_dir=corpus, out_dir=run, config=config, resume=True)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in kept.items())  # the finished fold was kept, not redone
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("model.safetensors")) == \
        sorted(p.relative_to(reference).as_posix() for p in reference.rglob("model.safetensors"))
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(tmp_path / "s.csv"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_an_unwritable_submission_or_review_export_is_an_error_naming_the_path(corpus, tmp_path, monkeypatch):
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=with_overrides(load_preset("cpu-small"), FAST))
    _disk_full_after(monkeypatch, successes=0, error=errno.EROFS)
    out = tmp_path / "readonly" / "submission.csv"
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out}: cannot write (Read-only file system)" in result.output, result.output
    assert not out.exists()
    _no_temporaries(tmp_path / "readonly")
    monkeypatch.undo()

    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(corpus / "train_tp.csv", labels / "train_tp.csv")
    before = (labels / "train_tp.csv").read_bytes()
    database = tmp_path / "review.sqlite"
    with review_db.open_db(database) as connection:
        ids = review_db.store_candidates(connection, [
            {"recording_id": "r1", "species_id": 0, "songtype_id": 1, "t_min": 1.0, "f_min": 500.0, "t_max": 2.0, "f_max": 3000.0,
             "score": 0.9, "template_id": "", "source": "test"},
            {"recording_id": "r2", "species_id": 1, "songtype_id": 1, "t_min": 0.5, "f_min": 500.0, "t_max": 1.5, "f_max": 3000.0,
             "score": 0.8, "template_id": "", "source": "test"}])
        review_db.record_decision(connection, candidate_id=ids[0], decision="tp", reviewer="a")
        review_db.record_decision(connection, candidate_id=ids[1], decision="fp", reviewer="a")
    _disk_full_after(monkeypatch, successes=0)
    with pytest.raises(OutputError, match=r"train_(tp|fp)\.csv: cannot write \(No space left on device\)"):
        export_labels(db_path=database, out_dir=labels)
    assert (labels / "train_tp.csv").read_bytes() == before  # the labels it would have replaced are untouched
    _no_temporaries(labels)
    monkeypatch.undo()
    summary = export_labels(db_path=database, out_dir=labels)  # the decisions were never lost: the export now works
    assert len(pd.read_csv(labels / "train_tp.csv")) == len(pd.read_csv(corpus / "train_tp.csv")) + 1, str(summary)
    assert len(pd.read_csv(labels / "train_fp.csv")) == 1


def _can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{where}'"], capture_output=True)
    return probe.returncode == 0


def test_cli_jobs_on_a_real_full_tmpfs_fail_clearly_and_finish_after_space_is_freed(corpus, tmp_path):
    mount = tmp_path / "small_disk"
    if not _can_mount_tmpfs(mount):
        pytest.skip("this machine forbids user mount namespaces (unshare -rm); the injected disk-full tests above cover it")
    config = with_overrides(load_preset("cpu-small"), TWO_FOLDS)
    reference = train(data_dir=corpus, out_dir=tmp_path / "reference", config=config)
    run_bytes = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    small_kb = max(64, int(run_bytes * 0.6) // 1024)
    logs = tmp_path / "logs"
    logs.mkdir()
    cli = " ".join(CLI)
    fast = " ".join(f"--set '{o}'" for o in TWO_FOLDS)
    script = textwrap.dedent(f"""\
        set -u
        step() {{ name=$1; shift; "$@" > {logs}/$name.out 2> {logs}/$name.err; echo $? > {logs}/$name.rc;
                  find {mount} -name '*.tmp' > {logs}/$name.tmp; }}
        mount -t tmpfs -o size={small_kb}k tmpfs {mount}
        step train_full {cli} train --data {corpus} --out {mount}/run --preset cpu-small {fast}
        find {mount}/run -name model.safetensors -printf '%p %T@\\n' > {logs}/finished_before
        mount -o remount,size=256m {mount}
        step train_resumed {cli} train --data {corpus} --out {mount}/run --preset cpu-small {fast} --resume
        find {mount}/run -name model.safetensors -printf '%p %T@\\n' > {logs}/finished_after
        mount -o remount,size=$(( $(du -sk {mount} | cut -f1) + 24 ))k {mount}
        step predict_full {cli} predict --run {mount}/run --audio {corpus}/test --out {mount}/job --device cpu
        mount -o remount,size=256m {mount}
        step predict_resumed {cli} predict --run {mount}/run --audio {corpus}/test --out {mount}/job --device cpu
        cp {mount}/job/submission.csv {logs}/job_submission.csv
        """)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    def step(name: str) -> tuple[int, str]:
        text = (logs / f"{name}.out").read_text() + (logs / f"{name}.err").read_text()
        assert not (logs / f"{name}.tmp").read_text().strip(), f"{name} left temporary files"
        assert "Traceback" not in text, text
        return int((logs / f"{name}.rc").read_text()), text

    for name in ("train_full", "predict_full"):
        code, text = step(name)
        assert code == 2 and "No space left on device" in text and str(mount) in text, (name, text)
    for name in ("train_resumed", "predict_resumed"):
        code, text = step(name)
        assert code == 0, (name, text)
    before = dict(line.split() for line in (logs / "finished_before").read_text().splitlines())
    after = dict(line.split() for line in (logs / "finished_after").read_text().splitlines())
    assert len(before) < 2 and len(after) == 2  # the small disk stopped training part-way; the resume finished it
    assert all(after[path] == stamp for path, stamp in before.items())  # a fold finished before was kept, not retrained
    submission = pd.read_csv(logs / "job_submission.csv")  # the resumed job scored every recording
    assert sorted(submission["recording_id"]) == sorted(p.stem for p in (corpus / "test").glob("*.flac"))
