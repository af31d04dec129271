"""The review page in a real browser (Playwright + the system's Chromium) against a real uvicorn server.

Skipped, with the reason, when the playwright package or a Chromium binary is missing;
Playwright's own browser download is never used (it needs the internet).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from dawnchorus.review import create_app, export_labels, read_candidates_csv
from dawnchorus.review.server import LOOPBACK_HOSTS, bind_socket, page_url

from test_review_api import make_corpus
from test_review_learning import searched, truth  # noqa: F401  (searched: a fixture)
from test_batch_jobs import trained  # noqa: F401  (what searched is built on)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")


def find_chromium() -> str | None:
    """A Chromium that runs; Ubuntu's snap stub at /usr/bin/chromium-browser exists but does not."""
    for candidate in (os.environ.get("DAWNCHORUS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if not candidate or not Path(candidate).is_file() or not os.access(candidate, os.X_OK):
            continue
        try:
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and "chrom" in version.stdout.lower():
            return candidate
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (apt-get install chromium, or set DAWNCHORUS_CHROMIUM)")


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on a free localhost port in a thread; yields the page's URL."""
    import uvicorn

    listener = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield page_url("127.0.0.1", listener.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path):
    """The review app for the test corpus, served on localhost."""
    corpus = make_corpus(tmp_path)
    app = create_app(candidates=read_candidates_csv(corpus / "candidates.csv"), audio_dir=corpus / "data" / "train",
                     db_path=corpus / "review.sqlite", reviewer="ana", allowed_hosts=LOOPBACK_HOSTS)
    with serving(app) as url:
        yield corpus, url


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def decisions_on_screen(page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.decision)")


def current_id(page) -> str:
    return page.get_attribute("#rows tr.current", "data-id")


def wait_for_decision(page, candidate_id: int, decision: str) -> None:
    page.wait_for_selector(f'#rows tr[data-id="{candidate_id}"][data-decision="{decision}"]', timeout=10_000)


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)


def test_mark_by_click_and_keyboard_reload_and_export(served, page):
    corpus, url = served
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))

    open_page(page, url)
    assert decisions_on_screen(page) == ["", "", "", ""] and current_id(page) == "1"
    page.wait_for_function("() => { const i = document.getElementById('spectrogram'); return i.complete && i.naturalWidth > 300; }")
    clip = page.evaluate("fetch(document.getElementById('clip').src).then(r => [r.status, r.headers.get('content-type')])")
    assert clip == [200, "audio/wav"]
    page.keyboard.press(".")  # pan: the view moves one context width later, "c" brings it back
    assert "pan=1" in page.get_attribute("#spectrogram", "src") and "+1" in page.inner_text("#pan-label")
    page.click("#pan-left")
    page.click("#pan-left")
    assert "pan=-1" in page.get_attribute("#spectrogram", "src")
    page.keyboard.press("c")
    assert "pan" not in page.get_attribute("#spectrogram", "src")
    page.fill("#reviewer", "bea")
    page.dispatch_event("#reviewer", "change")

    page.click("#btn-tp")  # by click
    wait_for_decision(page, 1, "tp")
    assert current_id(page) == "2"
    page.keyboard.press("f")
    wait_for_decision(page, 2, "fp")
    page.keyboard.press(" ")
    wait_for_decision(page, 3, "skip")
    assert current_id(page) == "4"
    page.keyboard.press("ArrowLeft")
    assert current_id(page) == "3"
    page.keyboard.press("t")  # changes the skip to TP; the skip stays in the history
    wait_for_decision(page, 3, "tp")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowRight")
    assert current_id(page) == "4"
    assert "3 of 4 decided" in page.inner_text("#progress")

    page.reload()  # decisions come back from the database; the page resumes at the first undecided
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    assert decisions_on_screen(page) == ["tp", "fp", "tp", ""] and current_id(page) == "4"
    assert "undecided" in page.inner_text("#current-title")
    page.click('#rows tr[data-id="1"]')
    assert current_id(page) == "1" and "TP by bea" in page.inner_text("#current-title")
    page.wait_for_selector("#history li")

    page.select_option("#filter-decision", "tp")
    assert page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)") == ["1", "3"]
    page.select_option("#filter-decision", "")
    page.select_option("#sort", "score-desc")
    assert page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)") == ["1", "3", "2", "4"]
    assert current_id(page) == "1"
    page.keyboard.press("ArrowRight")  # the review keys work right after choosing in a filter list
    assert current_id(page) == "3"
    page.select_option("#filter-species", "0")
    page.fill("#filter-recording", "rec_b")
    assert page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)") == ["3"]

    assert not errors, errors
    assert requests and all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]

    summary = export_labels(db_path=corpus / "review.sqlite", out_dir=corpus / "labels")
    assert (summary.tp_total, summary.fp_total) == (2, 1)
    tp = pd.read_csv(corpus / "labels" / "train_tp.csv")
    fp = pd.read_csv(corpus / "labels" / "train_fp.csv")
    assert [tuple(r) for r in tp.itertuples(index=False)] == [("rec_a", 0, 1, 0.5, 800.0, 1.2, 1200.0),
                                                              ("rec_b", 0, 1, 0.2, 2500.0, 0.9, 3500.0)]
    assert [tuple(r) for r in fp.itertuples(index=False)] == [("rec_a", 1, 1, 1.5, 2000.0, 2.0, 4000.0)]
    history = page.evaluate("fetch('/api/candidates/3/history').then(r => r.json())")
    assert [(d["decision"], d["reviewer"]) for d in history] == [("skip", "bea"), ("tp", "bea")]


def test_one_active_learning_round_reranks_the_page(searched, page):
    """Four decisions (two TP, two FP, by keyboard) retrain the head; the page re-ranks and shows it."""
    archive, root = searched
    app = create_app(candidates=read_candidates_csv(root / "candidates.csv"), audio_dir=archive, db_path=root / "browser.sqlite",
                     reviewer="ana", allowed_hosts=LOOPBACK_HOSTS, index_dir=root / "index", learn_every=4)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with serving(app) as url:
        open_page(page, url)
        assert page.is_visible("#mode-box") and page.is_visible("#learning")
        assert "retrained 0 time(s); next in 4" in page.text_content("#learning-caption")
        rows = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => [r.dataset.id, r.children[1].textContent])")
        wanted = [r for r in rows if truth({"recording_id": r[1]}) == "tp"][:2] + \
                 [r for r in rows if truth({"recording_id": r[1]}) == "fp"][:2]
        for candidate_id, recording_id in wanted:
            page.click(f'#rows tr[data-id="{candidate_id}"]')
            page.keyboard.press("t" if truth({"recording_id": recording_id}) == "tp" else "f")
            page.wait_for_selector(f'#rows tr[data-id="{candidate_id}"][data-decision]:not([data-decision=""])', timeout=10_000)
        page.wait_for_function("() => document.getElementById('message').textContent.includes('re-ranked')", timeout=15_000)
        assert "retrained 1 time(s)" in page.text_content("#learning-caption")
        chances = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.children[6].textContent)")
        assert all(value != "–" for value in chances)  # every candidate has the head's P(TP) now
        page.select_option("#mode", "uncertain")
        page.wait_for_function("() => document.getElementById('message').textContent.includes('most uncertain')")
        assert errors == []
