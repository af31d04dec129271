"""Review app API (FastAPI TestClient, no server): listing, decisions, media, and refusing bad requests."""

from __future__ import annotations

import io
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

from dawnchorus.errors import InputError, ValidationError
from dawnchorus.review import create_app, read_candidates_csv, read_detections
from dawnchorus.review.media import _band_filter
from dawnchorus.review.server import LOOPBACK_HOSTS

from conftest import write_tone

CANDIDATE_HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max,score,template_id\n"
CANDIDATE_ROWS = (
    "rec_a,0,1,0.5,800,1.2,1200,0.9,tmpl_a\n"
    "rec_a,1,1,1.5,2000,2.0,4000,0.4,tmpl_b\n"
    "rec_b,0,1,0.2,2500,0.9,3500,0.7,tmpl_a\n"
    "rec_b,2,1,2.0,100,2.9,8000,0.2,\n"
)


def make_corpus(root: Path) -> Path:
    """Two 3 s recordings in a tree (FLAC 16 kHz, WAV 22.05 kHz) as data/train, and four candidates."""
    write_tone(root / "data" / "train" / "rec_a.flac", sample_rate_hz=16000, duration_s=3.0, freq_hz=1000)
    write_tone(root / "data" / "train" / "night" / "rec_b.wav", sample_rate_hz=22050, duration_s=3.0, freq_hz=3000)
    (root / "candidates.csv").write_text(CANDIDATE_HEADER + CANDIDATE_ROWS)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def new_app(corpus: Path, **options):
    options.setdefault("candidates", read_candidates_csv(corpus / "candidates.csv"))
    return create_app(audio_dir=corpus / "data" / "train", db_path=corpus / "review.sqlite", reviewer="ana", **options)


@pytest.fixture
def client(corpus: Path) -> TestClient:
    return TestClient(new_app(corpus))


def test_candidates_are_listed_in_input_order_undecided(client):
    listed = client.get("/api/candidates").json()
    assert [(c["recording_id"], c["species_id"], c["template_id"]) for c in listed] == [
        ("rec_a", 0, "tmpl_a"), ("rec_a", 1, "tmpl_b"), ("rec_b", 0, "tmpl_a"), ("rec_b", 2, "")]
    assert listed[0]["t_min"] == 0.5 and listed[0]["f_max"] == 1200.0 and listed[0]["score"] == 0.9
    assert all(c["decision"] is None for c in listed)
    assert client.get("/api/session").json() == {"reviewer": "ana", "candidates": 4, "db": "review.sqlite"}


def test_decisions_persist_across_app_recreation_with_history(corpus, client):
    ids = [c["id"] for c in client.get("/api/candidates").json()]
    saved = client.post(f"/api/candidates/{ids[0]}/decision", json={"decision": "tp"}).json()
    assert saved["decision"] == "tp" and saved["reviewer"] == "ana" and saved["decided_at"].endswith("+00:00")
    client.post(f"/api/candidates/{ids[1]}/decision", json={"decision": "tp", "reviewer": "  Bo  "})
    client.post(f"/api/candidates/{ids[1]}/decision", json={"decision": "fp", "reviewer": "Cy"})
    client.post(f"/api/candidates/{ids[2]}/decision", json={"decision": "skip"})

    reopened = TestClient(new_app(corpus))  # a restart: same database, candidates loaded again
    listed = reopened.get("/api/candidates").json()
    assert [c["id"] for c in listed] == ids
    assert [(c["decision"], c["reviewer"]) for c in listed] == [("tp", "ana"), ("fp", "Cy"), ("skip", "ana"), (None, None)]
    history = reopened.get(f"/api/candidates/{ids[1]}/history").json()
    assert [(d["decision"], d["reviewer"]) for d in history] == [("tp", "Bo"), ("fp", "Cy")]


def test_spectrogram_is_a_png_cached_next_to_the_db(corpus, client):
    response = client.get("/api/candidates/1/spectrogram.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 150
    cached = list((corpus / "review_cache").glob("spec_*.png"))
    assert len(cached) == 1 and cached[0].read_bytes() == response.content
    assert client.get("/api/candidates/1/spectrogram.png").content == response.content


def test_audio_clip_is_a_wav_of_the_box_at_the_recording_rate(client):
    response = client.get("/api/candidates/3/audio.wav")  # rec_b (22.05 kHz), box 0.2-0.9 s
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(response.content))
    assert rate == 22050
    assert samples.shape[0] == pytest.approx((0.9 + 0.25) * rate, abs=2)  # the lead-in stops at the start of the file
    assert 0.89 < np.max(np.abs(samples)) <= 0.91  # normalised so faint calls are audible


def test_band_filter_keeps_the_box_band_and_removes_the_rest():
    rate = 16000
    t = np.arange(rate) / rate
    low, high = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 3000 * t)
    from scipy.signal import sosfilt

    filtered = sosfilt(_band_filter(2500, 3500, rate), low + high)[rate // 4:]
    spectrum = np.abs(np.fft.rfft(filtered))
    freqs = np.fft.rfftfreq(filtered.size, 1 / rate)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(3000) > 100 * at(1000)
    assert _band_filter(0, 8000, rate) is None  # full band: played unfiltered


def test_detections_parquet_covers_the_full_band(corpus):
    path = corpus / "det.parquet"
    pd.DataFrame({"recording_id": ["rec_a", "rec_b", "rec_b"], "species_id": [3, 1, 2], "t_start_s": [0.0, 1.0, 2.0],
                  "t_end_s": [1.0, 2.0, 3.0], "score": [0.8, 0.05, 0.6]}).to_parquet(path, index=False)
    client = TestClient(new_app(corpus, candidates=read_detections(path, min_score=0.1)))
    listed = client.get("/api/candidates").json()
    assert [(c["recording_id"], c["species_id"], c["songtype_id"], c["f_min"], c["f_max"]) for c in listed] == [
        ("rec_a", 3, 1, 0.0, 8000.0), ("rec_b", 2, 1, 0.0, 11025.0)]
    assert client.get(f"/api/candidates/{listed[1]['id']}/audio.wav").status_code == 200


def test_bad_candidate_rows_are_reported_with_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(CANDIDATE_HEADER + "rec_a,0,1,1.5,800,1.2,1200,0.9,x\nrec_a,zero,1,0.1,800,0.2,1200,high,x\n")
    with pytest.raises(ValidationError) as caught:
        read_candidates_csv(path)
    message = str(caught.value)
    assert "line 2: t_min (1.5) must be less than t_max (1.2)" in message
    assert "line 3: species_id 'zero' is not an integer" in message and "line 3: score 'high'" in message
    (tmp_path / "short.csv").write_text("recording_id,t_min\nrec_a,1\n")
    with pytest.raises(ValidationError, match="missing column"):
        read_candidates_csv(tmp_path / "short.csv")


def test_candidates_without_audio_are_left_out_with_a_warning(corpus, tmp_path):
    outside = write_tone(tmp_path / "elsewhere" / "rec_out.flac", sample_rate_hz=16000, duration_s=3.0)
    (corpus / "data" / "train" / "rec_link.flac").symlink_to(outside)  # leads out of the audio root
    (corpus / "more.csv").write_text(CANDIDATE_HEADER + "rec_a,0,1,0.5,800,1.2,1200,0.9,\n"
                                     "rec_missing,0,1,0.5,800,1.2,1200,0.9,\nrec_link,0,1,0.5,800,1.2,1200,0.9,\n")
    with pytest.warns(UserWarning, match="2 of 3 candidates left out.*rec_missing: no audio file.*rec_link.*points outside"):
        client = TestClient(new_app(corpus, candidates=read_candidates_csv(corpus / "more.csv")))
    assert [c["recording_id"] for c in client.get("/api/candidates").json()] == ["rec_a"]
    (corpus / "none.csv").write_text(CANDIDATE_HEADER + "rec_missing,0,1,0.5,800,1.2,1200,0.9,\n")
    with warnings.catch_warnings(), pytest.raises(InputError, match="none of the 1 candidates has a recording"):
        warnings.simplefilter("ignore")
        new_app(corpus, candidates=read_candidates_csv(corpus / "none.csv"))


@pytest.mark.parametrize("path", [
    "/api/candidates/..%2F..%2F..%2Fetc%2Fpasswd/audio.wav",
    "/api/candidates/%2e%2e%2f%2e%2e%2fcandidates.csv/spectrogram.png",
    "/api/candidates/../../candidates.csv",
    "/api/candidates/%2Fetc%2Fpasswd/audio.wav",
    "/api/candidates//etc/passwd/audio.wav",
    "/api/candidates/rec_a/audio.wav",
    "/api/candidates/999/audio.wav",
    "/api/candidates/-1/spectrogram.png",
    "/api/candidates/1.5/spectrogram.png",
    "/api/candidates/99999999999999999999999999/audio.wav",
    "/api/candidates/999/history",
    "/static/..%2Fserver.py",
    "/static/../server.py",
    "/static/%2e%2e%2f__init__.py",
    "/static/%2Fetc%2Fpasswd",
    "/static/index.html/..%2F..%2Fdb.py",
    "/api/recordings/rec_a/audio.wav",
])
def test_paths_outside_the_api_get_4xx(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert "root:" not in response.text and "import" not in response.text


@pytest.mark.parametrize("body, headers", [
    (b"{not json", {"content-type": "application/json"}),
    (b"[]", {"content-type": "application/json"}),
    (b'"tp"', {"content-type": "application/json"}),
    (b"{}", {"content-type": "application/json"}),
    (b'{"decision": "maybe"}', {"content-type": "application/json"}),
    (b'{"decision": 1}', {"content-type": "application/json"}),
    (b'{"decision": null}', {"content-type": "application/json"}),
    (b'{"decision": "tp", "reviewer": 5}', {"content-type": "application/json"}),
    (b'{"decision": "tp", "reviewer": "' + b"x" * 101 + b'"}', {"content-type": "application/json"}),
    (b'{"decision": "tp"}', {"content-type": "text/plain"}),  # what a cross-site form could send
    (b"decision=tp", {"content-type": "application/x-www-form-urlencoded"}),
    (b"", {}),
])
def test_malformed_decisions_get_4xx_and_write_nothing(corpus, client, body, headers):
    response = client.post("/api/candidates/1/decision", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    with sqlite3.connect(corpus / "review.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0


@pytest.mark.parametrize("candidate_id", ["abc", "999", "0", "-3", "1%2F..", "", "1e2", "%00"])
def test_decisions_for_bad_candidate_ids_get_4xx(client, candidate_id):
    response = client.post(f"/api/candidates/{candidate_id}/decision", json={"decision": "tp"})
    assert 400 <= response.status_code < 500, response.text


def test_unreadable_audio_after_start_up_is_a_4xx_with_the_reason(corpus, client):
    (corpus / "data" / "train" / "rec_a.flac").write_bytes(b"not audio at all")
    response = client.get("/api/candidates/2/spectrogram.png")
    assert response.status_code == 422 and "rec_a.flac" in response.json()["detail"]
    assert client.get("/api/candidates/2/audio.wav").status_code == 422


def test_localhost_server_refuses_foreign_host_headers(corpus):
    client = TestClient(new_app(corpus, allowed_hosts=LOOPBACK_HOSTS))
    assert client.get("/api/session", headers={"host": "evil.example:8765"}).status_code == 400
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        assert client.get("/api/session", headers={"host": host}).status_code == 200, host


def test_page_and_static_files_fetch_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/review.js">' in page.text
    for text in (page.text, client.get("/static/review.js").text, client.get("/static/review.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_db_that_is_not_a_review_database_is_an_input_error(corpus):
    (corpus / "garbage.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(InputError, match="not a usable review database"):
        create_app(candidates=read_candidates_csv(corpus / "candidates.csv"), audio_dir=corpus / "data" / "train",
                   db_path=corpus / "garbage.sqlite")
    with sqlite3.connect(corpus / "other.sqlite") as connection:
        connection.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(InputError, match="not a dawnchorus review database"):
        create_app(candidates=read_candidates_csv(corpus / "candidates.csv"), audio_dir=corpus / "data" / "train",
                   db_path=corpus / "other.sqlite")


TOKEN = "a-long-enough-review-token"


@pytest.mark.parametrize("path", ["/", "/api/candidates", "/api/candidates/1/spectrogram.png", "/api/candidates/1/audio.wav",
                                  "/static/review.js"])
def test_a_token_server_refuses_every_request_without_the_token(corpus, path):
    client = TestClient(new_app(corpus, token=TOKEN))
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong-token-of-some-length"}).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_printed_link_sets_a_cookie_that_the_page_then_uses(corpus):
    client = TestClient(new_app(corpus, token=TOKEN))
    first = client.get(f"/?token={TOKEN}")
    assert first.status_code == 200 and "httponly" in first.headers["set-cookie"].lower()
    assert client.get("/api/candidates").status_code == 200  # the cookie, no token in the URL
    assert client.post("/api/candidates/1/decision", json={"decision": "tp"}).status_code == 200
    stranger = TestClient(new_app(corpus, token=TOKEN))
    assert stranger.post("/api/candidates/2/decision", json={"decision": "tp"}).status_code == 401
    assert [c["decision"] for c in stranger.get("/api/candidates", headers={"Authorization": f"Bearer {TOKEN}"}).json()][:2] == ["tp", None]


def test_tokens_are_long_and_token_files_are_checked(corpus, tmp_path):
    from dawnchorus.review.server import new_token, page_url, read_token_file

    with pytest.raises(InputError, match="at least 16"):
        new_app(corpus, token="short")
    assert len(new_token()) >= 16 and new_token() != new_token()
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert read_token_file(tmp_path / "token") == TOKEN
    (tmp_path / "bad").write_text("two words here and more\n")
    with pytest.raises(InputError, match="--token-file"):
        read_token_file(tmp_path / "bad")
    assert page_url("0.0.0.0", 8765, token=TOKEN) == f"http://0.0.0.0:8765/?token={TOKEN}"


def test_the_page_zooms_out_to_wider_context_at_fixed_levels(client):
    near = client.get("/api/candidates/1/spectrogram.png")
    wide = client.get("/api/candidates/1/spectrogram.png?context_s=3")
    assert wide.status_code == 200 and wide.headers["content-type"] == "image/png" and wide.content != near.content
    assert client.get("/api/candidates/1/spectrogram.png?context_s=3").content == wide.content  # cached per zoom level
    refused = client.get("/api/candidates/1/spectrogram.png?context_s=2")
    assert refused.status_code == 422 and "zoom levels" in refused.json()["detail"]
    later = client.get("/api/candidates/1/spectrogram.png?pan=1")
    assert later.status_code == 200 and later.content not in (near.content, wide.content)
    too_far = client.get("/api/candidates/1/spectrogram.png?pan=21")
    assert too_far.status_code == 422 and "pan" in too_far.json()["detail"]


def test_panning_moves_the_view_and_stops_at_the_recordings_ends():
    from dawnchorus.data.audio import AudioInfo
    from dawnchorus.review.media import BoxView, _span

    view = BoxView(AudioInfo(Path("r.wav"), 16000, 60 * 16000, 1), 10.0, 12.0, 500.0, 2000.0)
    assert _span(view, 3.0) == (7.0, 8.0)
    assert _span(view, 3.0, 1) == (10.0, 8.0) and _span(view, 3.0, -2) == (1.0, 8.0)
    assert _span(view, 3.0, -20) == (0.0, 8.0) and _span(view, 3.0, 20) == (52.0, 8.0)  # the width stays, the ends hold


def test_a_sample_across_scores_keeps_the_rare_high_scores_and_each_species_quota():
    from dawnchorus.review.candidates import Candidate, sample_across_scores

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.05, 0.2, 5000), rng.uniform(0.9, 1.0, 20)])  # high scores are rare
    windows = [Candidate(f"r{i}", 3, 1, 0.0, 3.0, score=float(v)) for i, v in enumerate(scores)]
    windows += [Candidate(f"q{i}", 5, 1, 0.0, 3.0, score=0.5) for i in range(7)]
    sample = sample_across_scores(windows, per_species=100, seed=1)
    kept = np.array([c.score for c in sample if c.species_id == 3])
    assert len(kept) == 100 and (kept >= 0.9).sum() >= 10  # a tenth of the quota from the top bin
    assert sum(c.species_id == 5 for c in sample) == 7  # fewer than the quota: all kept
    assert sample == sorted(sample, key=windows.index)  # input order
    assert sample_across_scores(windows, per_species=100, seed=1) == sample  # repeatable
    with pytest.raises(InputError, match="--sample-per-species"):
        sample_across_scores(windows, per_species=0)


def test_overlapping_windows_of_one_species_are_one_call():
    from dawnchorus.review.candidates import Candidate, group_windows

    windows = [Candidate("r1", 3, 1, 0.0, 3.0, score=0.6), Candidate("r1", 3, 1, 2.0, 5.0, score=0.9),
               Candidate("r1", 3, 1, 4.0, 7.0, score=0.7), Candidate("r1", 3, 1, 9.0, 12.0, score=0.8),
               Candidate("r1", 5, 1, 2.0, 5.0, score=0.5), Candidate("r2", 3, 1, 0.0, 3.0, score=0.4)]
    calls = group_windows(windows)
    assert [(c.recording_id, c.species_id, c.t_min_s, c.t_max_s, c.score) for c in calls] == [
        ("r1", 3, 0.0, 7.0, 0.9), ("r1", 3, 9.0, 12.0, 0.8), ("r1", 5, 2.0, 5.0, 0.5), ("r2", 3, 0.0, 3.0, 0.4)]
