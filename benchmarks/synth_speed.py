"""Wall time of ``dawnchorus synth --n-train 300 --n-test 200`` (issue target: < 10 min on 2 cores)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import stamp  # noqa: E402

from dawnchorus.synth import SynthConfig, generate_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = generate_corpus(out_dir=tmp, config=SynthConfig(n_train=args.n_train, n_test=args.n_test, seed=1, workers=args.workers))
        seconds = time.perf_counter() - started
    audio_s = (args.n_train + args.n_test) * 60.0
    print(f"synth {args.n_train}+{args.n_test} recordings: {seconds:.1f} s wall ({audio_s / seconds:.0f}x real time); "
          f"{summary.n_tp} TP / {summary.n_fp} FP boxes ({stamp()})")


if __name__ == "__main__":
    main()
