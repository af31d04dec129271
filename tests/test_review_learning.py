"""Active learning in the review page: a head on the candidates' embeddings re-ranks the queue
every few decisions; modes; the random stream's precision; reopening continues."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dawnchorus.errors import InputError
from dawnchorus.review import create_app, read_candidates_csv
from dawnchorus.review.learning import ActiveLearner
from dawnchorus.search import index_archive, open_index, read_queries, resolve_index_embedder, search_index

from test_batch_jobs import trained  # noqa: F401  (a fixture: a tiny CNN run and an archive of two sites)

LABELS = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"


def _swap_site(recording_id: str) -> str:
    return recording_id.replace("siteA", "siteX").replace("siteB", "siteA").replace("siteX", "siteB")


def truth(row: dict) -> str:
    """The stand-in reviewer: calls in the first recording of each site are the species, the rest not."""
    return "tp" if row["recording_id"].endswith("_000000") else "fp"


@pytest.fixture(scope="module")
def searched(trained, tmp_path_factory):  # noqa: F811
    _, run, archive = trained
    root = tmp_path_factory.mktemp("learning")
    index_archive(audio_root=archive, out_dir=root / "index", embedder=run, hop_s=0.5)
    recording = next(r for r in open_index(root / "index").rows["recording_id"] if r.endswith("_010000"))
    (root / "query.csv").write_text(LABELS + f"{recording},2,1,0.5,300,2.0,5000\n")
    candidates = search_index(index=open_index(root / "index"), queries=read_queries(root / "query.csv", audio_root=archive),
                              embedder=resolve_index_embedder(run), top=40)
    candidates.to_csv(root / "candidates.csv", index=False)
    return archive, root


def client_for(searched, db_name: str, **options) -> TestClient:
    archive, root = searched
    app = create_app(candidates=read_candidates_csv(root / "candidates.csv"), audio_dir=archive, db_path=root / db_name,
                     index_dir=root / "index", **options)
    return TestClient(app)


def decide(client, row: dict) -> dict:
    response = client.post(f"/api/candidates/{row['id']}/decision", json={"decision": truth(row), "reviewer": "stand-in"})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_k_decisions_the_head_reranks_the_undecided(searched):
    client = client_for(searched, "likely.sqlite", learn_every=4)
    state = client.get("/api/learning").json()
    assert state["active"] and state["mode"] == "likely" and state["fits"] == 0 and state["until_fit"] == 4
    rows = client.get("/api/candidates").json()
    assert len(rows) >= 8 and all(r["p_tp"] is None for r in rows)
    twin_of = {r["id"]: next((t["id"] for t in rows if t["recording_id"] == _swap_site(r["recording_id"])
                              and (t["t_min"], t["t_max"]) == (r["t_min"], r["t_max"])), None) for r in rows}
    paired = [r for r in rows if twin_of[r["id"]] is not None and r["recording_id"].startswith("siteA")]
    tps = [r for r in paired if truth(r) == "tp"][:2]
    fps = [r for r in paired if truth(r) == "fp"][:2]
    assert len(tps) == len(fps) == 2
    answers = [decide(client, row) for row in tps + fps]
    assert [a["reordered"] for a in answers] == [False, False, False, True]
    ranked = client.get("/api/candidates").json()
    decided = [r for r in ranked if r["decision"] is not None]
    undecided = [r for r in ranked if r["decision"] is None]
    assert ranked[:4] == decided and all(r["p_tp"] is not None for r in ranked)
    chances = [r["p_tp"] for r in undecided]
    assert chances == sorted(chances, reverse=True)  # most likely first
    # the same audio in the other site (the same embedding) inherits what the reviewer said
    p_tp = {r["id"]: r["p_tp"] for r in ranked}
    assert min(p_tp[twin_of[r["id"]]] for r in tps) > max(p_tp[twin_of[r["id"]]] for r in fps)
    species = client.get("/api/learning").json()["species"][0]
    assert (species["tp"], species["fp"], species["species_id"]) == (2, 2, 2)

    uncertain = client.post("/api/learning", json={"mode": "uncertain"})
    assert uncertain.status_code == 200 and uncertain.json()["mode"] == "uncertain"
    closeness = [abs(r["p_tp"] - 0.5) for r in client.get("/api/candidates").json() if r["decision"] is None]
    assert closeness == sorted(closeness)
    assert client.post("/api/learning", json={"mode": "loudest"}).status_code == 422


def test_the_random_stream_estimates_precision_and_a_reopened_review_continues(searched):
    client = client_for(searched, "random.sqlite", learn_every=3, mode="random")
    queue = [r for r in client.get("/api/candidates").json()]
    for row in queue[:5]:
        decide(client, row)
    state = client.get("/api/learning").json()
    species = state["species"][0]
    sampled = species["random_tp"] + species["random_fp"]
    assert sampled == 5 and species["random_precision"] == pytest.approx(species["random_tp"] / 5)
    client.post("/api/learning", json={"mode": "likely"})
    decide(client, next(r for r in client.get("/api/candidates").json() if r["decision"] is None))
    assert client.get("/api/learning").json()["species"][0]["random_tp"] + species["random_fp"] <= 6
    again = client_for(searched, "random.sqlite", learn_every=3).get("/api/learning").json()
    assert again["species"][0]["tp"] + again["species"][0]["fp"] == 6  # the decisions are the database's
    assert again["species"][0]["random_tp"] + again["species"][0]["random_fp"] == 5  # the likely one is not random


def test_modes_order_the_undecided_and_bad_settings_are_refused():
    vectors = {i: np.array([float(i), 1.0]) for i in range(6)}
    learner = ActiveLearner(vectors=vectors, species_of={i: 1 for i in range(6)}, every=2)
    learner.probability = {0: 0.9, 1: 0.5, 2: 0.1, 3: 0.6, 4: 0.4, 5: 0.99}
    latest = {5: "tp"}
    assert learner.order(list(range(6)), latest) == [5, 0, 3, 1, 4, 2]
    learner.set_mode("uncertain")
    assert learner.order(list(range(6)), latest)[:3] == [5, 1, 3]
    learner.set_mode("input")
    assert learner.order(list(range(6)), latest) == [5, 0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="learning mode"):
        learner.set_mode("loudest")
    with pytest.raises(InputError, match="--learn-every"):
        ActiveLearner(vectors=vectors, species_of={}, every=0)


def _likely_then_random(seed: int, *, n: int = 400, likely: int = 100, random: int = 60):
    """A queue where the head ranks well: ``likely`` decisions take the best candidates, then the
    random mode serves ``random``. Returns the learner's estimate, the naive share of TPs among the
    random-mode decisions, and the true precision of the whole list."""
    rng = np.random.default_rng(seed)
    p_true = rng.beta(1, 2, n)
    labels = rng.random(n) < p_true
    learner = ActiveLearner(vectors={i: np.zeros(2) for i in range(n)}, species_of=dict.fromkeys(range(n), 7), seed=seed)
    learner.probability = {i: float(p) for i, p in enumerate(p_true)}
    latest, served = {}, set()
    for mode, count in (("likely", likely), ("random", random)):
        learner.set_mode(mode)
        for _ in range(count):
            candidate = next(i for i in learner.order(list(range(n)), latest) if i not in latest)
            latest[candidate] = "tp" if labels[candidate] else "fp"
            served |= {candidate} if mode == "random" else set()
    estimate = learner.random_sample(latest, served)[7]
    naive = np.mean([latest[i] == "tp" for i in served])
    return estimate, naive, labels.mean()


def test_the_random_sample_estimates_the_lists_precision_without_bias_after_a_likely_stretch():
    runs = [_likely_then_random(seed) for seed in range(40)]
    errors = np.array([estimate["random_precision"] - truth for estimate, _, truth in runs])
    naive_errors = np.array([naive - truth for _, naive, truth in runs])
    assert abs(errors.mean()) < 0.03  # the shuffle's prefix: unbiased
    assert naive_errors.mean() < -0.08  # random-mode decisions alone: the likely stretch took the best
    covered = [e["random_low"] <= truth <= e["random_high"] for e, _, truth in runs]
    assert np.mean(covered) >= 0.75
    assert all(e["random_tp"] + e["random_fp"] >= 60 for e, _, _ in runs)  # likely decisions inside the prefix count too


def test_without_random_decisions_there_is_no_sample():
    learner = ActiveLearner(vectors={i: np.zeros(2) for i in range(4)}, species_of=dict.fromkeys(range(4), 1))
    estimate = learner.random_sample({0: "tp", 1: "fp"}, served=set())[1]
    assert estimate["random_tp"] + estimate["random_fp"] == 0 and estimate["random_precision"] is None
