"""``dawnchorus demo``: the whole job on built-in example data, one command, no arguments.

It synthesises a corpus (once; reused by later runs), trains the ``cpu-small`` preset (at
half its epochs, ``DEMO_OVERRIDES``), predicts the test split, rescales the scores to the test
prevalence (the host paper's table for the RFCx species, and an estimate that needs no table),
scores everything against the corpus truth, and writes ``report.md`` with LWLRAP, a per-species
AP table and a PNG of one test recording with its detections.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from .baselines import constant_prior_submission
from .config import RunConfig, load_config, load_preset, with_overrides
from .data import load_dataset, rfcx_test_prevalence
from .infer import detections_table, persistence_evidence, predict
from .metrics import evaluate
from .postprocess import postprocess
from .priors import estimated_prior_options
from .report import plot_detections
from .submission import write_submission


# The demo must finish within 15 minutes on 2 CPU cores; the preset's 10 epochs take about 19
# there, 5 about 11 (benchmarks/RESULTS.md). A user's --set comes after these and wins.
DEMO_OVERRIDES = ("train.epochs=5",)


def demo_config(*, preset: str = "cpu-small", overrides: tuple[str, ...] = ()) -> RunConfig:
    """The demo's run config: the preset, the demo's shorter training, then the user's overrides."""
    return with_overrides(load_preset(preset), [*DEMO_OVERRIDES, *overrides])


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
             preset: str = "cpu-small", overrides: tuple[str, ...] = (), duration_s: float = 60.0) -> Path:
    out_dir = Path(out_dir)
    started = time.perf_counter()
    corpus = ensure_corpus(corpus_dir=out_dir / "corpus", n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s)
    dataset = load_dataset(corpus)
    truth = corpus / "truth" / "test_labels.csv"
    config = demo_config(preset=preset, overrides=overrides)
    run_dir = out_dir / "run"
    from .train import train

    saved = run_dir / "config.yaml"
    if saved.is_file() and load_config(saved) != config:
        shutil.rmtree(run_dir)  # a run from other settings: start afresh rather than resume it
    train(data_dir=corpus, out_dir=run_dir, config=config, resume=saved.is_file(), progress=True)
    prediction = predict(run_dirs=[run_dir], audio_dir=corpus / "test", progress=True)
    submission = write_submission(out_dir / "submission.csv", prediction.submission)
    detections = detections_table(prediction.windows, species=prediction.species)
    detections.to_parquet(out_dir / "detections.parquet", index=False)
    model_report = evaluate(truth_path=truth, pred_path=submission)
    (out_dir / "metrics.json").write_text(json.dumps(model_report.to_dict(), indent=2))

    host = rfcx_test_prevalence()
    evidence = persistence_evidence(run_dirs=[run_dir], audio_dir=corpus / "test", windows=prediction.windows)
    # the estimated row comes first: it is what a user without a prior table gets
    adjustments = [("+ estimated test prevalence (what `predict --postprocess` gives)", estimated_prior_options(run_dir, evidence))]
    if set(host) == set(dataset.species.species_ids):  # the RFCx species: the host paper's Table 2 applies
        adjustments.append(("+ host paper's test prevalence (a prior table)", {"prior": host}))
    rows = []
    for name, options in adjustments:
        adjusted = postprocess(scores=prediction.submission, **options).scores
        path = write_submission(out_dir / f"submission_{'prior' if 'prior' in options else 'estimated'}.csv", adjusted)
        rows.append((f"dawnchorus {preset} {name}", evaluate(truth_path=truth, pred_path=path)))
    rows.insert(1, (f"dawnchorus {preset}, {config.train.epochs} epochs (raw scores)", model_report))
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
