"""From one (or five) example boxes to a detector: embedding search, then rounds of 20 reviewed
decisions with the review page's head, against template matching and full training.

    python benchmarks/active_learning.py                   # world "reference", embedder trained on "dense-quiet"
    python benchmarks/active_learning.py --world NAME      # any world of benchmarks/worlds.py with a trained run

The archive is the world's 80 test recordings (30 s each, 0.67 h), indexed with the pooled features of a
``cpu-small`` run trained on *another* world (so the embedder never saw these labels). For the
5 rarest species present in 10-50 % of the test recordings, starting from 1 and from 5 of the world's training TP
boxes:
- round 0: ``search`` (top 200 candidates); a recording scores its best window similarity;
- rounds 1, 2, 5: 20 more decisions each, picked by the head's queue (``likely`` or
  ``uncertain``) and made by a stand-in reviewer reading the truth (TP when the candidate
  overlaps a call of the species); the head (``review.learning.fit_head``) then scores every
  indexed window and a recording scores its best window;
- template matching alone: the same boxes as templates over the test recordings;
- full training: the world's own ``cpu-small`` run, trained on all its TP/FP boxes.
AP is per species over the test recordings (truth: ``truth/test_labels.csv``), then averaged.
Wall time of a round (fit + re-rank + score every window) is measured on this machine.

The random stream's precision: after the 5 "likely" rounds, the review page's learner
(``review.learning.ActiveLearner``) serves 40 candidates in random mode; its estimate of the
whole candidate list's precision (``random_sample``) is set against the truth, and against the
share of TPs among the 40 random-mode decisions alone, averaged over 20 shuffles.

    python benchmarks/active_learning.py --embedder birdnet   # BirdNET's embeddings (the optional extra)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.batch.engine import read_parts  # noqa: E402
from dawnchorus.data.annotations import read_boxes  # noqa: E402
from dawnchorus.review.learning import ActiveLearner, fit_head, unit  # noqa: E402
from dawnchorus.search import index_archive, open_index, read_queries, resolve_index_embedder, search_index  # noqa: E402
from dawnchorus.search.index import box_vectors  # noqa: E402
from dawnchorus.templates import Template, match_directory  # noqa: E402

CLI = str(Path(sys.executable).with_name("dawnchorus"))
ROUNDS, PER_ROUND, TOP = (1, 2, 5), 20, 200


def recording_ap(truth: pd.DataFrame, species_id: int, scores: pd.Series) -> float:
    """AP of ``scores`` (recording id -> score; unscored recordings score lowest) over the test recordings."""
    y = truth[f"s{species_id}"].to_numpy(dtype=int)
    values = scores.reindex(truth["recording_id"]).to_numpy(dtype=float)
    return float(average_precision_score(y, np.nan_to_num(values, nan=-2.0)))


def stand_in(events: pd.DataFrame, species_id: int, row) -> int:
    calls = events[(events.species_id == species_id) & (events.recording_id == row.recording_id)]
    return int(((calls.t_min < row.t_max) & (calls.t_max > row.t_min)).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="reference")
    parser.add_argument("--embedder-world", default="dense-quiet")
    parser.add_argument("--embedder", default=None, help="'birdnet' instead of the run trained on --embedder-world")
    args = parser.parse_args()
    world = BENCH_DATA / "worlds" / args.world
    corpus, embedder_run = world / "corpus", BENCH_DATA / "worlds" / args.embedder_world / "runs" / "cpu-small"
    embedder_name = args.embedder or args.embedder_world
    embedder_run = args.embedder or embedder_run
    out = BENCH_DATA / "active_learning" / f"{args.world}_embedder-{embedder_name}"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    index_archive(audio_root=corpus / "test", out_dir=out / "index", embedder=embedder_run, hop_s=1.5, threads=2)
    index_s = time.perf_counter() - started
    index = open_index(out / "index")
    embedder = resolve_index_embedder(embedder_run, threads=2)
    parts = read_parts(out / "index")
    all_vectors = unit(np.stack(parts["vector"].to_numpy()) - np.asarray(index.meta["centre"], dtype=np.float32))
    window_recording = index.rows["recording_id"].to_numpy()
    if not (parts["recording_id"].to_numpy() == window_recording).all():
        raise SystemExit("the index rows and the parts disagree; rebuild the index")
    truth = pd.read_csv(corpus / "truth" / "test_labels.csv", dtype={"recording_id": str})
    events = pd.read_csv(corpus / "truth" / "events.csv", dtype={"recording_id": str})
    events = events[(events.split == "test") & (events.kind == "call")]
    tp_boxes = read_boxes(corpus / "train_tp.csv", label=1)
    # species a search can fail on: present in 10-50 % of the test recordings (the common ones score AP ~1 whatever
    # one does), with at least 5 training boxes to start from
    prevalence = truth.drop(columns="recording_id").mean()
    species = [int(c[1:]) for c in prevalence.sort_values().index
               if 0.1 <= prevalence[c] <= 0.5 and sum(b.species_id == int(c[1:]) for b in tp_boxes) >= 5][:5]

    full = _full_training_scores(world, corpus, out)
    results, round_seconds = [], []
    for species_id in species:
        boxes = [b for b in tp_boxes if b.species_id == species_id]
        for n_examples in (1, 5):
            chosen = boxes[:n_examples]
            query_csv = out / f"query_{species_id}_{n_examples}.csv"
            pd.DataFrame([b.as_row() for b in chosen]).to_csv(query_csv, index=False)
            queries = read_queries(query_csv, audio_root=corpus / "train")
            candidates = search_index(index=index, queries=queries, embedder=embedder, top=TOP, threads=2)
            row = {"species_id": species_id, "examples": n_examples,
                   "search": recording_ap(truth, species_id, candidates.groupby("recording_id").score.max()),
                   "templates": _template_ap(chosen, corpus, truth, species_id),
                   "full_training": recording_ap(truth, species_id, full[f"s{species_id}"])}
            vectors = np.stack(box_vectors(index, list(zip(candidates.recording_id, candidates.t_min, candidates.t_max)),
                                           audio_paths={}))
            labels = np.array([stand_in(events, species_id, c) for c in candidates.itertuples()])
            decided_in = {}
            for mode in ("likely", "uncertain"):
                decided, probability = [], None  # before any head: the search order
                decided_in[mode] = decided
                for round_number in range(1, max(ROUNDS) + 1):
                    tick = time.perf_counter()
                    remaining = [i for i in range(len(candidates)) if i not in decided]
                    if probability is None:
                        key = lambda i: i  # noqa: E731  (candidates come best first)
                    elif mode == "likely":
                        key = lambda i: -probability[i]  # noqa: E731
                    else:
                        key = lambda i: abs(probability[i] - 0.5)  # noqa: E731
                    decided += sorted(remaining, key=key)[:PER_ROUND]
                    fitted = fit_head(vectors[decided], labels[decided])
                    if fitted is not None:
                        head = fitted[0]
                        probability = head.predict_proba(unit(vectors))[:, 1]
                        window_p = head.predict_proba(all_vectors)[:, 1]
                        scores = pd.Series(window_p).groupby(window_recording).max()
                    else:
                        scores = candidates.groupby("recording_id").score.max()
                    round_seconds.append(time.perf_counter() - tick)
                    if round_number in ROUNDS:
                        row[f"{mode}_round{round_number}"] = recording_ap(truth, species_id, scores)
                        row[f"{mode}_round{round_number}_tp_found"] = int(labels[decided].sum())
            row.update(_random_stream(vectors, labels, decided_in["likely"]))
            results.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(results)
    summary = table.drop(columns="species_id").groupby("examples").mean().round(3)
    print(summary.T.to_string())
    print(json.dumps({"index_s": round(index_s, 1), "audio_h": round(float(parts.groupby("recording_id").t_end_s.max().sum()) / 3600, 2),
                      "round_s_median": round(float(np.median(round_seconds)), 3),
                      "round_s_max": round(float(np.max(round_seconds)), 3)}))
    table.to_csv(out / "results.csv", index=False)
    print(json.dumps({"random_stream_error": round(float(table["random_error"].mean()), 3),
                      "random_stream_abs_error": round(float(table["random_abs_error"].mean()), 3),
                      "random_stream_coverage": round(float(table["random_coverage"].mean()), 3),
                      "random_mode_only_error": round(float(table["random_mode_only_error"].mean()), 3)}))
    command = f"--embedder {args.embedder}" if args.embedder else f"--embedder-world {args.embedder_world}"
    print(f"python benchmarks/active_learning.py --world {args.world} {command}; {stamp()}")


def _random_stream(vectors: np.ndarray, labels: np.ndarray, decided: list[int], served: int = 40, shuffles: int = 20) -> dict:
    """After the likely rounds' decisions, the page's learner serves ``served`` candidates in random
    mode; its estimate of the list's precision against the truth, over ``shuffles`` shuffles (the
    page's shuffle is one of them, fixed per candidate list)."""
    truth = float(labels.mean())
    errors, covered, sizes, naive = [], [], [], []
    for seed in range(shuffles):
        learner = ActiveLearner(vectors=dict(enumerate(vectors)), species_of=dict.fromkeys(range(len(labels)), 0),
                                mode="random", seed=seed)
        latest = {i: "tp" if labels[i] else "fp" for i in decided}
        in_random = []
        for _ in range(min(served, len(labels) - len(latest))):
            candidate = next(i for i in learner.order(list(range(len(labels))), latest) if i not in latest)
            latest[candidate] = "tp" if labels[candidate] else "fp"
            in_random.append(candidate)
        estimate = learner.random_sample(latest, set(in_random))[0]
        errors.append(estimate["random_precision"] - truth)
        covered.append(estimate["random_low"] <= truth <= estimate["random_high"])
        sizes.append(estimate["random_tp"] + estimate["random_fp"])
        naive.append(float(labels[in_random].mean()) - truth)
    return {"list_precision": truth, "random_error": float(np.mean(errors)), "random_abs_error": float(np.mean(np.abs(errors))),
            "random_coverage": float(np.mean(covered)), "random_sample": float(np.mean(sizes)),
            "random_mode_only_error": float(np.mean(naive))}


def _template_ap(boxes, corpus: Path, truth: pd.DataFrame, species_id: int) -> float:
    templates = [Template(b.recording_id, b.species_id, b.songtype_id, b.t_min_s, b.t_max_s, b.f_min_hz, b.f_max_hz,
                          template_id=f"t{i}") for i, b in enumerate(boxes)]
    matched = match_directory(templates=templates, audio_dir=corpus / "test", template_audio_dir=corpus / "train",
                              threshold=-1.0, top_n=1, workers=2)
    return recording_ap(truth, species_id, matched.groupby("recording_id").score.max())


def _full_training_scores(world: Path, corpus: Path, out: Path) -> pd.DataFrame:
    submission = out / "full_training.csv"
    if not submission.is_file():
        subprocess.run([CLI, "predict", "--run", str(world / "runs" / "cpu-small"), "--audio", str(corpus / "test"),
                        "--out", str(submission), "--device", "cpu", "--no-postprocess"], check=True, capture_output=True)
    return pd.read_csv(submission, dtype={"recording_id": str}).set_index("recording_id")


if __name__ == "__main__":
    main()
