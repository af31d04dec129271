"""The winning recipe step by step on the standard synthetic corpus (issue 4's ablation).

Rows: clip model -> frame-level model -> + prior post-processing (prior table, estimated
prevalences) -> + 1..K pseudo-label rounds -> + ensemble of the clip and frame models. Every
training run lands in ``bench_data/runs/recipe_<name>`` and is reused (or resumed) when the
script runs again, so an interrupted ablation continues where it stopped.

    python benchmarks/recipe_ablation.py                 # cpu-small settings, 2 pseudo rounds
    python benchmarks/recipe_ablation.py --rounds 3 --set train.device=cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp, standard_corpus  # noqa: E402

from dawnchorus.config import load_preset, with_overrides  # noqa: E402
from dawnchorus.data.species import rfcx_test_prevalence  # noqa: E402
from dawnchorus.ensemble import ensemble_tables  # noqa: E402
from dawnchorus.infer import predict  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.postprocess import postprocess, reference_from_run  # noqa: E402
from dawnchorus.pseudo import train_pseudo_rounds  # noqa: E402
from dawnchorus.submission import write_submission  # noqa: E402
from dawnchorus.train import train  # noqa: E402

MODELS = {
    "clip": [],
    "frame": ["model.head=frame", "loss.frame_weight=1.0", "infer.frame_step_s=0.5", "infer.aggregate=max"],
}


def score(corpus: Path, table, path: Path) -> tuple[float, float]:
    write_submission(path, table)
    report = evaluate(truth_path=corpus / "truth" / "test_labels.csv", pred_path=path)
    return report.lwlrap, report.map


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=2, help="pseudo-label rounds on the frame model")
    parser.add_argument("--pl-model", default="clip", choices=list(MODELS), help="model that gets the pseudo-label rounds")
    args = parser.parse_args()
    corpus = standard_corpus()
    out = BENCH_DATA / "recipe"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, float, float]] = []
    predictions = {}
    for name, extra in MODELS.items():
        run_dir = BENCH_DATA / "runs" / f"recipe_{name}"
        config = with_overrides(load_preset(args.preset), extra + args.overrides
                                + [f"train.cache_dir={BENCH_DATA / 'audio_cache'}", f"pseudo.audio_dir={corpus / 'test'}"])
        started = time.perf_counter()
        train(data_dir=corpus, out_dir=run_dir, config=config, resume=(run_dir / "config.yaml").is_file(), progress=True)
        predictions[name] = predict(run_dirs=[run_dir], audio_dir=corpus / "test", pseudo_round=0).submission
        rows.append((f"{name} model", *score(corpus, predictions[name], out / f"{name}.csv"), time.perf_counter() - started))
        reference = reference_from_run(run_dir)
        for label, options in (("prior table (host paper)", {"prior": rfcx_test_prevalence()}),
                               ("estimated prior (classify and count)", {"estimate": "cc"}),
                               ("estimated prior (EM)", {"estimate": "em"})):
            for ref_label, ref in (("", None), (", OOF reference", reference)):
                adjusted = postprocess(scores=predictions[name], reference=ref, **options).scores
                rows.append((f"{name} + {label}{ref_label}", *score(corpus, adjusted, out / "pp.csv"), 0.0))
    pl_dir = BENCH_DATA / "runs" / f"recipe_{args.pl_model}"
    for number in range(1, args.rounds + 1):
        started = time.perf_counter()
        train_pseudo_rounds(run_dir=pl_dir, data_dir=corpus, rounds=number, progress=True)
        table = predict(run_dirs=[pl_dir], audio_dir=corpus / "test", pseudo_round=number).submission
        raw = score(corpus, table, out / f"{args.pl_model}_pl{number}.csv")
        rows.append((f"{args.pl_model} + {number} pseudo-label round(s)", *raw, time.perf_counter() - started))
        adjusted = postprocess(scores=table, prior=rfcx_test_prevalence()).scores
        rows.append((f"{args.pl_model} + {number} round(s) + prior table", *score(corpus, adjusted, out / "pp.csv"), 0.0))
        predictions[f"pl{number}"] = table
    members = [predictions["clip"], predictions["frame"]] + ([predictions[f"pl{args.rounds}"]] if args.rounds else [])
    for method in ("mean", "rank"):
        combined = ensemble_tables(tables=members, method=method)
        rows.append((f"ensemble ({method}) of clip, frame{', last round' if args.rounds else ''}",
                     *score(corpus, combined, out / "ens.csv"), 0.0))
        adjusted = postprocess(scores=combined, prior=rfcx_test_prevalence()).scores
        rows.append((f"ensemble ({method}) + prior table", *score(corpus, adjusted, out / "pp.csv"), 0.0))
    print(f"\n{args.preset} {' '.join(args.overrides)} ({stamp()})")
    print("| step | test LWLRAP | test mAP | minutes |\n|---|---|---|---|")
    for name, lwlrap, mean_ap, seconds in rows:
        print(f"| {name} | {lwlrap:.4f} | {mean_ap:.4f} | {seconds / 60:.1f} |")


if __name__ == "__main__":
    main()
