"""Closing the loop (issue 5): templates -> candidates -> review -> labels -> training.

On the standard synthetic corpus: one template per species and song type (its best-SNR TP
box), matched across every training recording (top 3 per template and recording), reviewed
by a stand-in reviewer that knows the corpus truth (TP when the candidate overlaps a call of
its species, else FP), stored through the review database exactly as the review page stores
clicks, exported with ``dawnchorus review export`` semantics (merged into the original
labels without duplicates), then the ``cpu-small`` preset is trained on the enlarged labels
and scored on the test split. The baseline is the same preset on the original labels.

    python benchmarks/mined_labels.py [--baseline-run bench_data/runs/recipe_clip]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp, standard_corpus  # noqa: E402
from template_matching import hits, pick_templates  # noqa: E402

from dawnchorus.config import load_preset, with_overrides  # noqa: E402
from dawnchorus.infer import predict  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.review.db import open_db, record_decision, store_candidates  # noqa: E402
from dawnchorus.review.export import export_labels  # noqa: E402
from dawnchorus.submission import write_submission  # noqa: E402
from dawnchorus.templates import match_directory  # noqa: E402
from dawnchorus.train import train  # noqa: E402


def mined_corpus(corpus: Path, out: Path) -> Path:
    """The corpus layout with the original labels, audio linked rather than copied."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        if not (out / name).exists():
            (out / name).symlink_to((corpus / name).resolve(), target_is_directory=True)
    for name in ("train_tp.csv", "train_fp.csv", "species.csv", "sample_submission.csv"):
        shutil.copyfile(corpus / name, out / name)
    return out


def train_and_score(*, data: Path, run_dir: Path, corpus: Path) -> tuple[float, float, float]:
    started = time.perf_counter()
    config = with_overrides(load_preset("cpu-small"), [f"train.cache_dir={BENCH_DATA / 'audio_cache'}"])
    train(data_dir=data, out_dir=run_dir, config=config, resume=(run_dir / "config.yaml").is_file(), progress=True)
    path = write_submission(run_dir / "submission.csv", predict(run_dirs=[run_dir], audio_dir=corpus / "test").submission)
    report = evaluate(truth_path=corpus / "truth" / "test_labels.csv", pred_path=path)
    return report.lwlrap, report.map, (time.perf_counter() - started) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--baseline-run", type=Path, default=BENCH_DATA / "runs" / "mined_baseline",
                        help="cpu-small run on the original labels (trained here if missing)")
    args = parser.parse_args()
    corpus = standard_corpus()
    work = BENCH_DATA / "mined"
    started = time.perf_counter()
    candidates = match_directory(templates=pick_templates(corpus), audio_dir=corpus / "train", top_n=args.top_n,
                                 workers=args.workers, progress=True)
    match_minutes = (time.perf_counter() - started) / 60
    duration = {p.stem: 60.0 for p in (corpus / "train").glob("*.flac")}
    candidates["t_max"] = [min(t, duration.get(r, t)) for r, t in zip(candidates.recording_id, candidates.t_max)]
    calls = pd.read_csv(corpus / "truth" / "events.csv").query("split == 'train' and kind == 'call'")
    verdicts = hits(candidates, calls)

    data = mined_corpus(corpus, work / "corpus")
    db_path = work / "review.sqlite"
    db_path.unlink(missing_ok=True)
    with open_db(db_path) as connection:
        ids = store_candidates(connection, candidates.assign(source="template matching").to_dict("records"))
        for candidate_id, is_call in zip(ids, verdicts):
            record_decision(connection, candidate_id=candidate_id, decision="tp" if is_call else "fp", reviewer="corpus truth")
    summary = export_labels(db_path=db_path, out_dir=data)
    print(summary, flush=True)

    baseline = train_and_score(data=corpus, run_dir=args.baseline_run, corpus=corpus)
    mined = train_and_score(data=data, run_dir=BENCH_DATA / "runs" / "mined_labels", corpus=corpus)
    print(f"\nmined labels, cpu-small, fold 0 ({stamp()}); matching {len(candidates)} candidates took {match_minutes:.1f} min")
    print("| labels | TP boxes | FP boxes | test LWLRAP | test mAP | minutes (train + predict) |\n|---|---|---|---|---|---|")
    original = (len(pd.read_csv(corpus / "train_tp.csv")), len(pd.read_csv(corpus / "train_fp.csv")))
    print(f"| original | {original[0]} | {original[1]} | {baseline[0]:.4f} | {baseline[1]:.4f} | {baseline[2]:.1f} |")
    print(f"| original + mined (top {args.top_n}, auto-reviewed) | {summary.tp_total} | {summary.fp_total} | "
          f"{mined[0]:.4f} | {mined[1]:.4f} | {mined[2]:.1f} |")


if __name__ == "__main__":
    main()
