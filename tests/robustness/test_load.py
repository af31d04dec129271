"""Bounded local load (the code of benchmarks/service_load.py, at a size the suite affords): eight
reviewers at once lose or double no decision, 200 spectrograms requested together all arrive, and
an archive job over many tiny files holds a bounded number of descriptors and memory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from archive_engine import untrained_run  # noqa: E402
from service_load import (  # noqa: E402
    CLI, burst_spectrograms, decisions_in_db, post_decisions, process_memory_kb, review_corpus, start_review, tiny_archive,
    watch_predict,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def review_server(tmp_path_factory):
    root = review_corpus(tmp_path_factory.mktemp("load"), candidates=250, duration_s=20.0)
    process, address, _ = start_review(root)
    yield root, process, address
    process.terminate()
    process.wait(timeout=30)


def test_eight_concurrent_reviewers_lose_and_double_no_decision(review_server):
    root, _, address = review_server
    latencies = post_decisions(address, clients=8, per_client=250, candidates=250)
    assert len(latencies) == 2000
    reviewers = decisions_in_db(root / "review.sqlite")
    assert sorted(reviewers) == sorted(f"c{c}-{s}" for c in range(8) for s in range(250))


def test_two_hundred_spectrograms_requested_at_once_all_arrive_within_bounded_memory(review_server):
    _, process, address = review_server
    before = process_memory_kb(process.pid)["rss_kb"]
    images = burst_spectrograms(address, list(range(1, 201)))
    assert [status for status, _ in images] == [200] * 200
    assert all(body.startswith(PNG) for _, body in images)
    assert len({body for _, body in images}) == 200  # each its own candidate's image
    grown_mb = (process_memory_kb(process.pid)["peak_kb"] - before) / 1024
    assert grown_mb < 1024, grown_mb  # about 160 MB measured; the renderer must not hold every image's audio at once


def test_an_archive_job_over_many_tiny_files_keeps_descriptors_and_memory_bounded(tmp_path):
    archive = tiny_archive(tmp_path / "archive", files=400)
    run = untrained_run(tmp_path / "run")
    job = tmp_path / "job"
    watched = watch_predict([CLI, "predict", "--run", str(run), "--audio", str(archive), "--out", str(job), "--format",
                             "submission"], job_dir=job, every_s=0.1)
    working = [s for s in watched["samples"] if s["done"] > 0]
    assert working and sum(1 for _ in (job / "journal.jsonl").open()) == 400
    descriptors = [s["fds"] for s in working]
    assert max(descriptors) - min(descriptors) <= 16, descriptors  # no descriptor kept per file
    # while files are scored (not while the outputs are written): medians, so one chunk's transient peak does not count
    rss_mb = np.array([s["rss_kb"] / 1024 for s in working if s["done"] < 400])
    quarter = len(rss_mb) // 4
    early, late = np.median(rss_mb[quarter : 2 * quarter]), np.median(rss_mb[3 * quarter :])
    assert late - early < 100, (early, late)  # a leak of even 0.5 MB per file would show as 100 MB here
