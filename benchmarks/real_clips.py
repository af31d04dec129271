"""A smoke test of accuracy on real calls: QUT curlew and currawong clips (../shared/real/qut-curlew).

Species 0 is the bush stone-curlew (call times from the HTK label file), species 1 the pied
currawong (a whole clip each). A dozen clips of each species are the TP boxes; curlew-free
and currawong-free clips give FP boxes; every other clip is a test recording, scored by
per-species AP over the test clips (a clip of the other species counts as a negative). Few
clips from one island: it shows whether a detector learns real calls at all, not how accurate
it is. Never tune on it.

    python benchmarks/real_clips.py                      # templates-linear
    python benchmarks/real_clips.py --preset cpu-small --set sampling.crops_per_epoch=2048
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.data.annotations import read_htk_segments  # noqa: E402
from dawnchorus.metrics import average_precision_per_species  # noqa: E402

QUT = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "qut-curlew"
COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]


def build(root: Path, *, n_train: int) -> pd.DataFrame:
    """The dataset under ``root`` (Kaggle layout); returns the test truth."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    times = read_htk_segments(QUT / "Template_CURLEW1" / "CURLEW1" / "phones.mlf", label="CURLEW1")
    curlews = sorted(p for p in (QUT / "Template_CURLEW1" / "data" / "Curlew1_Calls").glob("*.wav"))
    timed = [p for p in curlews if p.stem in times]
    groups = {  # (clips, species, TP or FP, box band)
        "curlew": (timed, 0, 1, (1200.0, 4500.0)),
        "currawong": (sorted((QUT / "Template_CURRAWONG1" / "data" / "test" / "testTrue").glob("*.wav")), 1, 1, (500.0, 5000.0)),
        "no-curlew": (sorted((QUT / "Template_CURLEW1" / "data" / "test" / "testFalse").glob("*.wav")), 0, 0, (1200.0, 4500.0)),
        "no-currawong": (sorted((QUT / "Template_CURRAWONG1" / "data" / "test" / "testFalse").glob("*.wav")), 1, 0, (500.0, 5000.0)),
    }
    tp, fp, truth = [], [], []
    for name, (clips, species, label, (f_min, f_max)) in groups.items():
        n = n_train if label == 1 else len(clips) // 3
        for i, clip in enumerate(clips):
            stem = f"{name}_{clip.stem}"
            if i < n:
                shutil.copy(clip, root / "train" / f"{stem}.wav")
                t_min, t_max = times[clip.stem] if name == "curlew" else (0.0, sf.info(clip).duration)
                (tp if label else fp).append((stem, species, 1, t_min, f_min, t_max, f_max))
            else:
                shutil.copy(clip, root / "test" / f"{stem}.wav")
                present = {0: float(name == "curlew"), 1: float(name == "currawong")}
                truth.append({"recording_id": stem, "s0": present[0], "s1": present[1]})
    pd.DataFrame(tp, columns=COLUMNS).to_csv(root / "train_tp.csv", index=False)
    pd.DataFrame(fp, columns=COLUMNS).to_csv(root / "train_fp.csv", index=False)
    pd.DataFrame({"species_id": [0, 1], "scientific_name": ["Burhinus grallarius", "Strepera graculina"]}).to_csv(
        root / "species.csv", index=False)
    return pd.DataFrame(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="templates-linear")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--n-train", type=int, default=12, help="TP clips per species")
    parser.add_argument("--out", type=Path, default=BENCH_DATA / "real_clips")
    args = parser.parse_args()
    from dawnchorus.cli import app
    from typer.testing import CliRunner

    shutil.rmtree(args.out, ignore_errors=True)
    truth = build(args.out / "data", n_train=args.n_train)
    runner, started = CliRunner(), time.perf_counter()
    sets = [x for item in args.set for x in ("--set", item)]
    for command in (["train", "--data", str(args.out / "data"), "--out", str(args.out / "run"), "--preset", args.preset, *sets],
                    ["predict", "--run", str(args.out / "run"), "--audio", str(args.out / "data" / "test"),
                     "--out", str(args.out / "submission.csv")]):
        result = runner.invoke(app, command)
        if result.exit_code != 0:
            sys.exit(f"{' '.join(command[:1])} failed:\n{result.output}")
    scores = pd.read_csv(args.out / "submission.csv").set_index("recording_id").loc[truth["recording_id"]]
    ap = average_precision_per_species(y_true=truth[["s0", "s1"]].to_numpy(), y_score=scores[["s0", "s1"]].to_numpy())
    print(f"{args.preset} {' '.join(args.set)}: {len(truth)} test clips, AP curlew {ap[0]:.3f}, currawong {ap[1]:.3f}, "
          f"mean {np.nanmean(ap):.3f}; {time.perf_counter() - started:.0f} s; {stamp()}")


if __name__ == "__main__":
    main()
