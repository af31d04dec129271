"""Search and one active-learning round on real recordings: the QUT curlew clips of ../shared/real.

    python benchmarks/real_search.py                                  # BirdNET (optional extra) and any --run given
    python benchmarks/real_search.py --embedder birdnet --embedder bench_data/worlds/dense-quiet/runs/cpu-small

The archive is ``qut-curlew/``: 198 short clips (0.4-3.6 s, 22 kHz) from St Bees Island plus a
240 s MP3 soundscape. A clip is a curlew when it lies in ``Template_CURLEW1/data/Curlew1_Calls``
or its name says Curlew (``Curlew3`` clips sit among the currawong negatives); the other clips
(currawongs, koala bellows, scrub fowl, wind) are not; the MP3 holds both and is left out of
the scores. For each of 10 curlew clips used as the query (``search --query clip.wav``):
- search: clips ranked by their best window's similarity; precision of the top 20, and AP;
- one round: a stand-in reviewer (the folder truth) decides 20 candidates, the 10 best and 10
  drawn at random from the rest (as a reviewer switching between the page's "likely" and
  "random" modes; the best 20 are all curlews, from which no head can learn). The review
  page's head (``review.learning.fit_head``) then scores every window; a clip scores its best.
Too few recordings to choose anything on: this shows the loop works on real calls and how far
apart the embedders are, not how accurate either is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.batch.engine import read_parts  # noqa: E402
from dawnchorus.review.learning import fit_head, unit  # noqa: E402
from dawnchorus.search import index_archive, open_index, read_queries, resolve_index_embedder, search_index  # noqa: E402
from dawnchorus.search.index import box_vectors  # noqa: E402

QUERIES, DECISIONS, TOP = 10, 20, 250


def is_curlew(recording_id: str) -> float:
    if recording_id.lower().endswith(".mp3") or "Currawongs_curlew" in recording_id:
        return np.nan  # the soundscape holds both
    return float("Curlew1_Calls" in recording_id or "curlew" in recording_id.rsplit("/", 1)[-1].lower())


def scored(truth: pd.Series, scores: pd.Series) -> tuple[float, float]:
    """Precision of the top 20 clips and AP, over the labelled clips (unscored ones rank last)."""
    values = scores.reindex(truth.index).fillna(-2.0)
    top = values.sort_values(ascending=False).index[:20]
    return float(truth[top].mean()), float(average_precision_score(truth.to_numpy(dtype=int), values.to_numpy()))


def run(embedder_spec: str, archive: Path, out: Path) -> dict:
    index_archive(audio_root=archive, out_dir=out, embedder=embedder_spec, hop_s=1.5, threads=2)
    index = open_index(out)
    embedder = resolve_index_embedder(embedder_spec, threads=2)
    windows = index.rows["recording_id"].to_numpy()
    vectors = unit(np.stack(read_parts(out)["vector"].to_numpy()) - np.asarray(index.meta["centre"], dtype=np.float32))
    truth = pd.Series({r: is_curlew(r) for r in sorted(set(windows))}).dropna()
    queries = sorted(r for r in truth.index if "Curlew1_Calls" in r)[:: max(1, sum("Curlew1_Calls" in r for r in truth.index) // QUERIES)][:QUERIES]
    rows = []
    for recording_id in queries:
        clip = archive / f"{recording_id}.wav"
        candidates = search_index(index=index, queries=read_queries(clip, audio_root=None, species_id=1), embedder=embedder,
                                  top=TOP, threads=2)
        others = truth.drop(recording_id)  # the query is not its own result
        row = dict(zip(("search_p20", "search_ap"), scored(others, candidates.groupby("recording_id").score.max())))
        listed = candidates[candidates.recording_id.isin(others.index)].reset_index(drop=True)
        rest = np.random.default_rng(len(rows)).permutation(np.arange(DECISIONS // 2, len(listed)))[:DECISIONS - DECISIONS // 2]
        decided = listed.iloc[[*range(DECISIONS // 2), *rest]]
        labels = others[decided.recording_id].to_numpy(dtype=int)
        fitted = fit_head(np.stack(box_vectors(index, list(zip(decided.recording_id, decided.t_min, decided.t_max)),
                                               audio_paths={})), labels)
        if fitted is not None:
            head_scores = pd.Series(fitted[0].predict_proba(vectors)[:, 1]).groupby(windows).max()
            row.update(zip(("round1_p20", "round1_ap"), scored(others, head_scores)))
        row.update(query=recording_id, tp_in_decisions=int(labels.sum()))
        rows.append(row)
    table = pd.DataFrame(rows)
    return {"embedder": Path(embedder_spec).name if embedder_spec != "birdnet" else "birdnet", "clips": len(truth),
            "curlew_clips": int(truth.sum()), "queries": len(table), "rounds_fitted": int(table.get("round1_ap", pd.Series(dtype=float)).notna().sum()),
            **{k: round(float(table[k].mean()), 3) for k in ("search_p20", "search_ap", "round1_p20", "round1_ap")
               if k in table}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=Path("../shared/real"))
    parser.add_argument("--embedder", action="append", default=None, help="birdnet or a run directory (repeatable)")
    args = parser.parse_args()
    archive = args.real / "qut-curlew"
    for spec in args.embedder or ["birdnet"]:
        name = "birdnet" if spec == "birdnet" else Path(spec).name
        print(json.dumps(run(spec, archive, BENCH_DATA / "real_search" / name)), flush=True)
    print(f"python benchmarks/real_search.py {' '.join(f'--embedder {e}' for e in args.embedder or ['birdnet'])}; {stamp()}")


if __name__ == "__main__":
    main()
