"""Masked loss vs. naive BCE (unknown = 0) vs. TP-only, same preset and budget.

Each variant trains the preset on the standard synthetic corpus, predicts the test split and
is scored against the truth. ``--set`` overrides apply to every variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp, standard_corpus  # noqa: E402

from dawnchorus.config import load_preset, with_overrides  # noqa: E402
from dawnchorus.infer import predict  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.submission import write_submission  # noqa: E402
from dawnchorus.train import train  # noqa: E402

VARIANTS = {"masked": ["loss.label_mode=masked"], "naive": ["loss.label_mode=naive"], "tp_only": ["loss.label_mode=tp_only"],
            "masked_lsoft": ["loss.label_mode=masked", "loss.name=lsoft"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    corpus = standard_corpus()
    rows = []
    for name in args.variants:
        run_dir = BENCH_DATA / "runs" / f"ablation_{args.preset}_{name}"
        config = with_overrides(load_preset(args.preset), args.overrides + VARIANTS[name] + [f"train.cache_dir={BENCH_DATA / 'audio_cache'}"])
        started = time.perf_counter()
        train(data_dir=corpus, out_dir=run_dir, config=config, resume=(run_dir / "config.yaml").is_file(), progress=True)
        result = predict(run_dirs=[run_dir], audio_dir=corpus / "test")
        path = write_submission(run_dir / "submission.csv", result.submission)
        report = evaluate(truth_path=corpus / "truth" / "test_labels.csv", pred_path=path)
        rows.append((name, report.lwlrap, report.map, (time.perf_counter() - started) / 60))
        print(f"{name}: LWLRAP {report.lwlrap:.4f} mAP {report.map:.4f}", flush=True)
    print(f"\n{args.preset} {' '.join(args.overrides)} ({stamp()})")
    print("| labels | LWLRAP | mAP | minutes |\n|---|---|---|---|")
    for name, score, mean_ap, minutes in rows:
        print(f"| {name} | {score:.4f} | {mean_ap:.4f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
