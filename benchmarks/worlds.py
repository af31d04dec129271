"""Accuracy across synthetic worlds: per pipeline, the mean and the worst world (issue 16).

Each world (``dawnchorus.synth.worlds``) gets its own corpus, a training run of the recipe and
a prediction of its test split; every pipeline is then scored on it:

  raw            the model's recording scores
  table          odds-scaled to the world's own prevalences (what a prior table gives)
  estimated-cc   odds-scaled to prevalences estimated by classify and count on each
                 recording's k-th best window (the run's persistence rule)
  estimated-acc  the same count adjusted for the rule's out-of-fold tpr and fpr
  estimated-tpr  the count divided by the rule's tpr only (fpr taken as 0)

with LWLRAP, mAP and the absolute error of each estimated prevalence (mean over species and
the worst species). Corpora, runs and per-world results land in ``bench_data/worlds`` and are
reused, so an interrupted sweep continues where it stopped.

Choose defaults on the tuning worlds; this is the only script that reads ``REPORT_WORLDS``:

    python benchmarks/worlds.py                           # tuning worlds
    python benchmarks/worlds.py --worlds report --backgrounds ../shared/real
    python benchmarks/worlds.py --recipe lsoft --set loss.name=lsoft --set loss.label_mode=masked
    python benchmarks/worlds.py --recipe templates --preset templates-linear     # heads: their full recipe

A CNN preset trains at the sweep's budget (``BUDGET``); a head preset (``kind: embedding-head``)
trains in minutes and runs as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.config import (HeadConfig, load_any_config, load_config, to_dict, with_head_overrides,  # noqa: E402
                               with_overrides)
from dawnchorus.embed_runs import head_persistence_evidence, predict_embeddings, train_embedding_head  # noqa: E402
from dawnchorus.data.species import read_prior_csv  # noqa: E402
from dawnchorus.infer import persistence_evidence, predict  # noqa: E402
from dawnchorus.metrics import lwlrap, mean_average_precision  # noqa: E402
from dawnchorus.postprocess import postprocess  # noqa: E402
from dawnchorus.priors import persistence_rates_from_run  # noqa: E402
from dawnchorus.synth import REPORT_WORLDS, TUNING_WORLDS, WORLDS, generate_corpus, world  # noqa: E402
from dawnchorus.train import train  # noqa: E402

# The sweep's budget: a quarter of cpu-small's crops, so that one world takes minutes on 2 cores.
BUDGET = ("train.epochs=4", "sampling.crops_per_epoch=4096")
PIPELINES = ("raw", "table", "estimated-cc", "estimated-acc", "estimated-tpr")


def world_corpus(name: str, *, root: Path, n_train: int, n_test: int, seed: int, duration_s: float,
                 backgrounds: Path | None) -> Path:
    corpus = root / name / "corpus"
    config = world(name).config(n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s, background_dir=backgrounds)
    saved = corpus / "synth_config.json"
    if not (saved.is_file() and json.loads(saved.read_text()) == json.loads(json.dumps(to_dict(config)))
            and (corpus / "truth" / "test_labels.csv").is_file()):
        generate_corpus(out_dir=corpus, config=config, progress=True)
    return corpus


def predict_world(corpus: Path, run_dir: Path, *, heads: bool):
    """The test split's prediction and the persistence evidence for estimating its prevalences."""
    if heads:
        prediction = predict_embeddings(run_dir=run_dir, audio_dir=corpus / "test", cache_dir=run_dir / "embedding_cache",
                                        threads=2, progress=True)
        return prediction, head_persistence_evidence(run_dir=run_dir, audio_dir=corpus / "test", windows=prediction.windows,
                                                     cache_dir=run_dir / "embedding_cache")
    prediction = predict(run_dirs=[run_dir], audio_dir=corpus / "test", progress=True)
    return prediction, persistence_evidence(run_dirs=[run_dir], audio_dir=corpus / "test", windows=prediction.windows)


def score_world(corpus: Path, run_dir: Path, *, heads: bool = False) -> dict:
    truth = pd.read_csv(corpus / "truth" / "test_labels.csv")
    prediction, (table, k, threshold) = predict_world(corpus, run_dir, heads=heads)
    prediction.windows.to_parquet(run_dir / "test_windows.parquet", index=False)  # for estimators tried later, offline
    scores = prediction.submission.set_index("recording_id").loc[truth["recording_id"]].reset_index()
    columns = [c for c in truth.columns if c != "recording_id"]
    y_true = truth[columns].to_numpy(dtype=np.float64)
    true_prevalence = y_true.mean(axis=0)
    tpr, fpr = persistence_rates_from_run(run_dir)
    options = {
        "raw": None,
        "table": {"prior": read_prior_csv(corpus / "truth" / "prevalence.csv")},
        "estimated-cc": {"estimate": "cc", "estimate_from": table, "cc_threshold": threshold},
        "estimated-acc": {"estimate": "acc", "estimate_from": table, "cc_threshold": threshold, "cc_rates": (tpr, fpr)},
        "estimated-tpr": {"estimate": "acc", "estimate_from": table, "cc_threshold": threshold, "cc_rates": (tpr, 0.0)},
    }
    out = {"persistence": {"windows": k, "threshold": threshold, "tpr": tpr, "fpr": fpr}}
    for name, option in options.items():
        if option is None:
            adjusted, prevalence = scores, None
        else:
            result = postprocess(scores=scores, **option)
            adjusted, prevalence = result.scores, result.species["prevalence"].to_numpy()
        y_score = adjusted[columns].to_numpy(dtype=np.float64)
        row = {"lwlrap": lwlrap(y_true=y_true, y_score=y_score), "map": mean_average_precision(y_true=y_true, y_score=y_score)}
        if prevalence is not None and name != "table":
            error = np.abs(prevalence - true_prevalence)
            worst = int(np.argmax(error))
            row |= {"prevalence_mae": float(error.mean()), "prevalence_max_error": float(error[worst]),
                    "worst_species": f"{columns[worst]}: {prevalence[worst]:.3f} for {true_prevalence[worst]:.3f}"}
        out[name] = row
    return out


def summary(results: dict[str, dict]) -> list[str]:
    lines = ["| pipeline | metric | mean | worst | worst world | " + " | ".join(results) + " |",
             "|---|---|---|---|---|" + "---|" * len(results)]
    for pipeline in PIPELINES:
        for metric, worst_is_max in (("lwlrap", False), ("map", False), ("prevalence_mae", True), ("prevalence_max_error", True)):
            values = {w: r[pipeline][metric] for w, r in results.items() if metric in r[pipeline]}
            if not values:
                continue
            pick = max if worst_is_max else min
            worst = pick(values, key=values.get)
            cells = " | ".join(f"{values[w]:.3f}" if w in values else "-" for w in results)
            lines.append(f"| {pipeline} | {metric} | {np.mean(list(values.values())):.3f} | {values[worst]:.3f} | {worst} | {cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", default="tuning", help="tuning, report, all, or comma-separated world names")
    parser.add_argument("--recipe", default="cpu-small", help="name of this recipe's runs and results")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE, after the sweep's budget")
    parser.add_argument("--n-train", type=int, default=150)
    parser.add_argument("--n-test", type=int, default=80)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--backgrounds", type=Path, default=None, help="real soundscapes for worlds that mix them in")
    parser.add_argument("--out", type=Path, default=BENCH_DATA / "worlds")
    args = parser.parse_args()
    names = {"tuning": TUNING_WORLDS, "report": REPORT_WORLDS, "all": tuple(WORLDS)}.get(args.worlds) or tuple(args.worlds.split(","))
    config = load_any_config(args.preset)
    heads = isinstance(config, HeadConfig)  # a head on embeddings trains in minutes: the full recipe, no sweep budget
    config = with_head_overrides(config, args.set) if heads else with_overrides(config, [*BUDGET, *args.set])
    budget = () if heads else BUDGET
    as_dict = dataclasses.asdict if heads else to_dict
    results = {}
    for name in names:
        started = time.perf_counter()
        corpus = world_corpus(name, root=args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                              duration_s=args.duration_s, backgrounds=args.backgrounds)
        run_dir = args.out / name / "runs" / args.recipe
        result_path = args.out / name / f"results_{args.recipe}.json"
        wanted = json.loads(json.dumps(as_dict(config)))
        if result_path.is_file() and json.loads(result_path.read_text()).get("config") == wanted:
            results[name] = json.loads(result_path.read_text())["scores"]
            continue
        saved = run_dir / "config.yaml"
        if saved.is_file() and not heads and load_config(saved) != config:
            sys.exit(f"{run_dir} holds a run of other settings (under the same --recipe name): give the recipe its own "
                     "--recipe name, or delete the folder")
        if heads:
            train_embedding_head(data_dir=corpus, out_dir=run_dir, cache_dir=run_dir / "embedding_cache", config=config,
                                 threads=2, resume=saved.is_file(), progress=True)
        else:
            train(data_dir=corpus, out_dir=run_dir, config=config, resume=saved.is_file(), progress=True)
        results[name] = score_world(corpus, run_dir, heads=heads)
        result_path.write_text(json.dumps({"config": wanted, "scores": results[name],
                                           "minutes": (time.perf_counter() - started) / 60}, indent=1))
        print(name, json.dumps(results[name]), flush=True)
    print(f"\n{args.recipe} ({args.preset} + {', '.join([*budget, *args.set]) or 'nothing'}), {args.n_train} train / {args.n_test} test "
          f"recordings of {args.duration_s:g} s per world, seed {args.seed}; {stamp()}\n")
    print("\n".join(summary(results)))


if __name__ == "__main__":
    main()
