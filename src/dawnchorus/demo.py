"""``dawnchorus demo``: the whole job on built-in example data, one command, no arguments.

It synthesises a corpus (once; reused by later runs), trains the ``templates-linear`` preset
(``DEMO_PRESET``; a CNN preset such as ``cpu-small`` trains at half its epochs,
``DEMO_OVERRIDES``), predicts the test split, rescales the scores to the test prevalence (the
host paper's table for the RFCx species, and an estimate that needs no table), scores
everything against the corpus truth, and writes ``report.md`` with LWLRAP, a per-species AP
table and a PNG of one test recording with its detections.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from .baselines import constant_prior_submission
from .config import HeadConfig, RunConfig, load_any_config, load_config, with_head_overrides, with_overrides
from .embed_runs import is_embedding_run
from .data import load_dataset, rfcx_test_prevalence
from .infer import detections_table, persistence_evidence, predict
from .metrics import evaluate
from .postprocess import postprocess
from .priors import estimated_prior_options
from .report import plot_detections
from .submission import write_submission


# The preset a user should start from: on every tuning world and on the demo corpus it beat the
# cpu-small CNN by a wide margin, in a third of the time (benchmarks/RESULTS.md, issue 16).
DEMO_PRESET = "templates-linear"
# The demo must finish within 15 minutes on 2 CPU cores; cpu-small's 10 epochs take about 19
# there, 5 about 11 (benchmarks/RESULTS.md). A user's --set comes after these and wins.
DEMO_OVERRIDES = ("train.epochs=5",)


def demo_config(*, preset: str = DEMO_PRESET, overrides: tuple[str, ...] = ()) -> RunConfig | HeadConfig:
    """The demo's run config: the preset, a CNN's shorter training, then the user's overrides."""
    config = load_any_config(preset)
    if isinstance(config, HeadConfig):
        return with_head_overrides(config, list(overrides))
    return with_overrides(config, [*DEMO_OVERRIDES, *overrides])


def _train_and_predict(config: RunConfig | HeadConfig, *, corpus: Path, run_dir: Path):
    """Train (resuming a run of the same settings), predict the test split; the prediction and
    the evidence for estimating the test prevalence."""
    saved = run_dir / "config.yaml"
    if isinstance(config, HeadConfig):
        from .embed_runs import head_persistence_evidence, predict_embeddings, train_embedding_head

        previous = load_any_config(saved) if saved.is_file() else None
        if previous is not None and (not isinstance(previous, HeadConfig) or _other_head(previous, config)):
            shutil.rmtree(run_dir)  # a run from other settings: start afresh rather than resume it
        cache = run_dir / "embedding_cache"
        train_embedding_head(data_dir=corpus, out_dir=run_dir, cache_dir=cache, config=config, resume=saved.is_file(),
                             threads=2, progress=True)
        prediction = predict_embeddings(run_dir=run_dir, audio_dir=corpus / "test", cache_dir=cache, threads=2, progress=True)
        return prediction, head_persistence_evidence(run_dir=run_dir, audio_dir=corpus / "test", cache_dir=cache,
                                                     windows=prediction.windows)
    from .train import train

    if saved.is_file() and (is_embedding_run(run_dir) or load_config(saved) != config):
        shutil.rmtree(run_dir)
    train(data_dir=corpus, out_dir=run_dir, config=config, resume=saved.is_file(), progress=True)
    prediction = predict(run_dirs=[run_dir], audio_dir=corpus / "test", progress=True)
    return prediction, persistence_evidence(run_dirs=[run_dir], audio_dir=corpus / "test", windows=prediction.windows)


def _other_head(saved: HeadConfig, wanted: HeadConfig) -> bool:
    return dataclasses.replace(wanted, model=saved.model, window_s=saved.window_s) != saved


def ensure_corpus(*, corpus_dir: Path, n_train: int, n_test: int, seed: int, duration_s: float = 60.0) -> Path:
    """Generate the corpus unless one made with the same settings is already there."""
    from .synth import SynthConfig, generate_corpus

    saved = corpus_dir / "synth_config.json"
    if saved.is_file() and (corpus_dir / "truth" / "test_labels.csv").is_file():
        previous = json.loads(saved.read_text())
        wanted = {"n_train": n_train, "n_test": n_test, "seed": seed, "duration_s": duration_s}
        if all(previous.get(k) == v for k, v in wanted.items()):
            return corpus_dir
    config = SynthConfig(n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s)
    generate_corpus(out_dir=corpus_dir, config=config, progress=True)
    return corpus_dir


def run_demo(*, out_dir: str | Path = "demo_out", n_train: int = 200, n_test: int = 50, seed: int = 1,
             preset: str = DEMO_PRESET, overrides: tuple[str, ...] = (), duration_s: float = 60.0) -> Path:
    out_dir = Path(out_dir)
    started = time.perf_counter()
    corpus = ensure_corpus(corpus_dir=out_dir / "corpus", n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s)
    dataset = load_dataset(corpus)
    truth = corpus / "truth" / "test_labels.csv"
    config = demo_config(preset=preset, overrides=overrides)
    run_dir = out_dir / "run"
    prediction, evidence = _train_and_predict(config, corpus=corpus, run_dir=run_dir)
    submission = write_submission(out_dir / "submission.csv", prediction.submission)
    detections = detections_table(prediction.windows, species=prediction.species)
    detections.to_parquet(out_dir / "detections.parquet", index=False)
    model_report = evaluate(truth_path=truth, pred_path=submission)
    (out_dir / "metrics.json").write_text(json.dumps(model_report.to_dict(), indent=2))

    host = rfcx_test_prevalence()
    # the estimated row comes first: it is what a user without a prior table gets
    adjustments = [("+ estimated test prevalence (what `predict --postprocess` gives)", estimated_prior_options(run_dir, evidence))]
    if set(host) == set(dataset.species.species_ids):  # the RFCx species: the host paper's Table 2 applies
        adjustments.append(("+ host paper's test prevalence (a prior table)", {"prior": host}))
    rows = []
    for name, options in adjustments:
        adjusted = postprocess(scores=prediction.submission, **options).scores
        path = write_submission(out_dir / f"submission_{'prior' if 'prior' in options else 'estimated'}.csv", adjusted)
        rows.append((f"dawnchorus {preset} {name}", evaluate(truth_path=truth, pred_path=path)))
    trained = "" if isinstance(config, HeadConfig) else f", {config.train.epochs} epochs"
    rows.insert(1, (f"dawnchorus {preset}{trained} (raw scores)", model_report))
    baselines = [("constant prior (training-label frequency)", None)]
    if set(host) == set(dataset.species.species_ids):
        baselines.append(("constant prior (host paper's test prevalence)", host))
    for name, prior in baselines:
        path = write_submission(out_dir / "baselines" / f"{'train' if prior is None else 'host'}_prior.csv",
                                constant_prior_submission(dataset=dataset, prior=prior))
        rows.append((name, evaluate(truth_path=truth, pred_path=path)))

    example = _example_recording(truth)
    truth_row = pd.read_csv(truth).set_index("recording_id").loc[example]
    png = plot_detections(audio_path=dataset.test[example].path, windows=prediction.windows[prediction.windows.recording_id == example],
                          species=prediction.species, out_png=out_dir / "example_detections.png",
                          truth_species=[int(c[1:]) for c, v in truth_row.items() if v == 1])
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# dawnchorus demo report", "",
        f"Corpus `{corpus}`: {len(dataset.train)} train / {len(dataset.test)} test recordings, {len(dataset.tp)} TP and "
        f"{len(dataset.fp)} FP boxes (seed {seed}). Run directory `{run_dir}` (config in `config.yaml`). "
        f"Wall time {minutes:.1f} min.", "",
        "| predictor | LWLRAP | mAP |", "|---|---|---|",
        *[f"| {name} | {r.lwlrap:.4f} | {r.map:.4f} |" for name, r in rows], "",
        f"Outputs: `{submission.name}` (Kaggle format), `detections.parquet` ({len(detections)} window scores), `metrics.json`.", "",
        f"![detections]({png.name})", "", "Per-species results of the model:", "", "```", model_report.format_table(), "```", "",
    ]
    report_path = out_dir / "report.md"
    report_path.write_text("\n".join(lines))
    return report_path


def _example_recording(truth_path: Path) -> str:
    """A test recording with several species, so the figure shows something interesting."""
    truth = pd.read_csv(truth_path).set_index("recording_id")
    return str(truth.sum(axis=1).sort_values(ascending=False, kind="stable").index[0])
