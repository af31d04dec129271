"""Template matching (the host paper's detector) on the synthetic corpus: precision, recall, speed.

One template per species:songtype, the TP box of train_tp.csv with the best snr_db in
truth/events.csv (else the first box), is matched against the first ``--recordings`` train
recordings (sorted by id), never against its own recording. Per template:

- candidates: how many boxes scored >= the threshold;
- precision: the share of candidates overlapping in time a call of the same species in that recording;
- recall: the share of the template's species:songtype calls overlapped by one of its candidates;
- top-3 recall: of the recordings holding such a call, the share where one of the template's
  three best candidates there hits a call of the species.

Speed is searched recordings per second of matching wall time per worker process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import stamp, standard_corpus  # noqa: E402

from dawnchorus.templates import DEFAULT_THRESHOLD, Template, match_directory, template_patches  # noqa: E402

TOP_N = 3


def pick_templates(corpus: Path) -> list[Template]:
    """The best-SNR TP box per species:songtype (a TP box is one truth call, matched by its start)."""
    boxes = pd.read_csv(corpus / "train_tp.csv")
    events_path = corpus / "truth" / "events.csv"
    if events_path.is_file():
        calls = pd.read_csv(events_path).query("split == 'train' and kind == 'call'")
        keys = ["recording_id", "species_id", "songtype_id"]
        joined = boxes.reset_index().merge(calls[keys + ["t_min", "snr_db"]], on=keys, how="left", suffixes=("", "_call"))
        joined.loc[(joined.t_min - joined.t_min_call).abs() > 0.05, "snr_db"] = float("nan")
        snr = joined.groupby("index").snr_db.max()
        boxes = boxes.assign(snr_db=snr.reindex(boxes.index).fillna(float("-inf")))
        boxes = boxes.sort_values("snr_db", ascending=False, kind="stable")
    best = boxes.drop_duplicates(["species_id", "songtype_id"]).sort_values(["species_id", "songtype_id"])
    return [Template(recording_id=r.recording_id, species_id=int(r.species_id), songtype_id=int(r.songtype_id), t_min_s=r.t_min,
                     t_max_s=r.t_max, f_min_hz=r.f_min, f_max_hz=r.f_max, template_id=f"{r.species_id}:{r.songtype_id}")
            for r in best.itertuples()]


def hits(boxes: pd.DataFrame, calls: pd.DataFrame) -> pd.Series:
    """For each box, whether it overlaps in time a call of the same species in the same recording."""
    if boxes.empty:
        return pd.Series(dtype=bool)
    pairs = boxes.reset_index().merge(calls, on=["recording_id", "species_id"], suffixes=("", "_call"))
    overlap = (pairs.t_min < pairs.t_max_call) & (pairs.t_max > pairs.t_min_call)
    return overlap.groupby(pairs["index"]).any().reindex(boxes.index, fill_value=False)


def score_template(template: Template, candidates: pd.DataFrame, calls: pd.DataFrame, searched: list[str]) -> dict:
    own = candidates[(candidates.template_id == template.template_id) & (candidates.recording_id != template.recording_id)].copy()
    recordings = [r for r in searched if r != template.recording_id]
    species_calls = calls[(calls.species_id == template.species_id) & calls.recording_id.isin(recordings)]
    own["hit"] = hits(own, species_calls)
    targets = species_calls[species_calls.songtype_id == template.songtype_id].reset_index(drop=True)
    found = hits(targets, own[["recording_id", "species_id", "t_min", "t_max"]])
    best = own.sort_values("score", ascending=False, kind="stable").groupby("recording_id").head(TOP_N)
    holding = set(targets.recording_id)
    top_hits = set(best[best.hit].recording_id) & holding
    return {
        "template": template.template_id, "recordings": len(holding), "candidates": len(own), "hits": int(own.hit.sum()),
        "precision": own.hit.mean() if len(own) else float("nan"), "calls": len(targets), "found": int(found.sum()),
        "recall": found.mean() if len(targets) else float("nan"), "top_hits": len(top_hits),
        "top3_recall": len(top_hits) / len(holding) if holding else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None, help="Synthetic corpus (default: the standard one).")
    parser.add_argument("--recordings", type=int, default=100, help="Search the first N train recordings (0 = all).")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--workers", type=int, default=0, help="Processes (0 = all cores).")
    args = parser.parse_args()
    corpus = args.corpus or standard_corpus()
    templates = pick_templates(corpus)
    searched = sorted(p.stem for p in (corpus / "train").glob("*.flac"))
    searched = searched[: args.recordings] if args.recordings else searched
    workers = min(args.workers or os.cpu_count() or 1, len(searched))
    started = time.perf_counter()
    template_patches(templates, audio_dir=corpus / "train")  # timed alone so speed counts matching only
    prepare_s = time.perf_counter() - started
    started = time.perf_counter()
    candidates = match_directory(templates=templates, audio_dir=corpus / "train", threshold=args.threshold,
                                 workers=workers, recording_ids=searched, progress=True)
    match_s = time.perf_counter() - started - prepare_s
    calls = pd.read_csv(corpus / "truth" / "events.csv").query("split == 'train' and kind == 'call'")
    rows = pd.DataFrame([score_template(t, candidates, calls, searched) for t in templates])
    total = {"template": "**all**", "recordings": rows.recordings.sum(), "candidates": rows.candidates.sum(), "hits": rows.hits.sum(),
             "precision": rows.hits.sum() / max(rows.candidates.sum(), 1), "calls": rows.calls.sum(), "found": rows.found.sum(),
             "recall": rows.found.sum() / max(rows.calls.sum(), 1), "top_hits": rows.top_hits.sum(),
             "top3_recall": rows.top_hits.sum() / max(rows.recordings.sum(), 1)}
    speed = len(searched) / match_s / workers
    print(f"\ntemplate matching, {corpus}, {len(templates)} templates x {len(searched)} train recordings, threshold {args.threshold}, "
          f"{workers} worker(s) ({stamp()})")
    print(f"speed: {speed:.2f} recordings/s per core ({match_s:.0f} s matching, {prepare_s:.0f} s preparing templates)")
    print("| species:songtype | recordings with calls | candidates | precision | recall of calls | top-3 recall |\n|---|---|---|---|---|---|")
    for row in [*rows.to_dict("records"), total]:
        print(f"| {row['template']} | {row['recordings']} | {row['candidates']} | {row['precision']:.3f} | "
              f"{row['recall']:.3f} ({row['found']}/{row['calls']}) | {row['top3_recall']:.3f} ({row['top_hits']}/{row['recordings']}) |")


if __name__ == "__main__":
    main()
