"""BirdNET embeddings with small heads on the standard synthetic corpus: accuracy and speed.

Extraction speed: windows/s and real-time factor of the BirdNET model (3 s windows, hop 3 s)
for 1 and 2 threads, one window per call vs batches of 16, plus decode + resample to 48 kHz.
Accuracy: embeddings of the training and test recordings are cached under
``bench_data/embeddings[_hopH]`` (resumable), then each pipeline trains with 5 folds by recording and
predicts the test split: the plain linear probe (C = 1, max over windows), the embed-linear and
embed-mlp presets, pseudo-label rounds (on the training recordings, then also on the test
recordings), the cpu-small CNN, and ensembles (geometric mean) of the embedding heads with the CNN;
each raw, with the host paper's prior and with the prior estimated (classify and count).
The CNN is trained here unless ``--cnn-run`` names a cpu-small run on this corpus.

    nice -n 19 python benchmarks/embeddings.py [--threads 2] [--skip-speed] [--cnn-run RUN | --skip-cnn] [--corpus-seed 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp, standard_corpus  # noqa: E402

from dawnchorus.data import find_audio_files, load_audio, rfcx_test_prevalence  # noqa: E402
from dawnchorus.config import load_any_config  # noqa: E402
from dawnchorus.embed_runs import predict_embeddings, train_embedding_head  # noqa: E402
from dawnchorus.ensemble import ensemble_tables  # noqa: E402
from dawnchorus.embeddings import BIRDNET_SAMPLE_RATE_HZ, birdnet_embedder, embed_directory, embed_wave  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.postprocess import postprocess  # noqa: E402
from dawnchorus.submission import write_submission  # noqa: E402


def speed(corpus: Path, *, recordings: int, hop_s: float) -> None:
    paths = list(find_audio_files(corpus / "test").values())[:recordings]
    started = time.perf_counter()
    waves = [load_audio(p, sample_rate_hz=BIRDNET_SAMPLE_RATE_HZ) for p in paths]
    decode_s = time.perf_counter() - started
    audio_s = sum(w.shape[0] for w in waves) / BIRDNET_SAMPLE_RATE_HZ
    print(f"\n## Extraction speed ({len(paths)} test recordings, {audio_s:.0f} s of audio, hop {hop_s:g} s)\n")
    print(f"decode + resample 44.1 -> 48 kHz: {decode_s:.2f} s ({audio_s / decode_s:.0f}x real time)\n")
    print("| threads | batch | windows/s | real-time factor | s per 60 s recording |\n|---|---|---|---|---|")
    for threads in (1, 2):
        for batch in (1, 16):
            embedder = birdnet_embedder(threads=threads, batch_size=batch)
            embed_wave(waves[0][: 3 * BIRDNET_SAMPLE_RATE_HZ], embedder=embedder, hop_s=hop_s)  # warm-up, allocation
            started = time.perf_counter()
            windows = sum(len(embed_wave(w, embedder=embedder, hop_s=hop_s).t_start_s) for w in waves)
            took = time.perf_counter() - started
            print(f"| {threads} | {batch} | {windows / took:.1f} | {audio_s / took:.0f}x | {60 * took / audio_s:.2f} |")


def _rows(name: str, table: pd.DataFrame, *, truth: Path, tmp: Path, seconds: float | str) -> list[str]:
    variants = {"raw": table, "host prior": postprocess(scores=table, prior=rfcx_test_prevalence()).scores,
                "estimated prior (cc)": postprocess(scores=table).scores}
    rows = []
    for variant, scores in variants.items():
        report = evaluate(truth_path=truth, pred_path=write_submission(tmp / "sub.csv", scores))
        timing = (f"{seconds:.0f} s" if isinstance(seconds, float) else seconds) if variant == "raw" else "+ <1 s"
        rows.append(f"| {name}, {variant} | {timing} | {report.lwlrap:.4f} | {report.map:.4f} |")
    return rows


def cache_for(hop_s: float) -> Path:
    return BENCH_DATA / ("embeddings" if hop_s == 3.0 else f"embeddings_hop{hop_s:g}")  # the cache key holds the hop


def accuracy(corpus: Path, *, threads: int, hop_s: float | None, folds: int, cnn_run: Path | None, skip_cnn: bool) -> None:
    embedder = birdnet_embedder(threads=threads, batch_size=16)
    truth = corpus / "truth" / "test_labels.csv"
    linear, mlp = load_any_config("embed-linear"), load_any_config("embed-mlp")
    if hop_s is not None:
        linear, mlp = (dataclasses.replace(c, hop_s=hop_s) for c in (linear, mlp))
    hops = sorted({3.0, linear.hop_s, mlp.hop_s})
    print(f"\n## Accuracy (BirdNET {embedder.name}, {folds} folds by recording, hops {hops} s)\n")
    for hop in hops:
        for split in ("train", "test"):
            started = time.perf_counter()
            summary = embed_directory(audio_dir=corpus / split, cache_dir=cache_for(hop), embedder=embedder, hop_s=hop, progress=True)
            print(f"extract {split}, hop {hop:g} s: {summary} in {time.perf_counter() - started:.0f} s ({threads} threads)")
    test_audio = str((corpus / "test").resolve())
    pipelines = {  # the reference first: C 1, max over 3 s windows taken every 3 s
        "linear probe (C 1, max over windows, hop 3 s)": (linear, dict(c=1.0, aggregate="max", hop_s=3.0)),
        f"embed-linear (C {linear.c:g}, hop {linear.hop_s:g} s, mean of top {linear.top_k} windows)": (linear, {}),
        "embed-mlp": (mlp, {}),
        "embed-linear + 2 pseudo-label rounds (train recordings)": (linear, dict(pseudo_rounds=2)),
        "embed-linear + 2 pseudo-label rounds (train + test recordings)": (linear, dict(pseudo_rounds=2, pseudo_audio_dir=test_audio)),
        "embed-mlp + 2 pseudo-label rounds (train + test recordings)": (mlp, dict(pseudo_rounds=2, pseudo_audio_dir=test_audio)),
    }
    print("| pipeline | train time (5 folds, cached embeddings) | test LWLRAP | test mAP |\n|---|---|---|---|")
    submissions = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, (config, options) in pipelines.items():
            run_dir = tmp / f"run{len(submissions)}"
            started = time.perf_counter()
            cache = cache_for(options.get("hop_s", config.hop_s))
            train_embedding_head(data_dir=corpus, out_dir=run_dir, cache_dir=cache, config=config, folds=folds,
                                 threads=threads, embedder=embedder, **options)
            seconds = time.perf_counter() - started
            submissions[name] = predict_embeddings(run_dir=run_dir, audio_dir=corpus / "test", cache_dir=cache, embedder=embedder).submission
            print("\n".join(_rows(name, submissions[name], truth=truth, tmp=tmp, seconds=seconds)), flush=True)
        best_linear = submissions["embed-linear + 2 pseudo-label rounds (train + test recordings)"]
        best_mlp = submissions["embed-mlp + 2 pseudo-label rounds (train + test recordings)"]
        ensembles = {"ensemble: embed-linear + embed-mlp (both + 2 PL rounds)": [best_linear, best_mlp]}
        if not skip_cnn:
            cnn_submission, cnn_seconds = _cnn(corpus, cnn_run=cnn_run, tmp=tmp)
            print("\n".join(_rows("CNN (cpu-small)", cnn_submission, truth=truth, tmp=tmp, seconds=cnn_seconds)), flush=True)
            ensembles["ensemble: embed-linear (+ 2 PL rounds) + CNN"] = [best_linear, cnn_submission]
            ensembles["ensemble: embed-linear + embed-mlp (+ 2 PL rounds) + CNN"] = [best_linear, best_mlp, cnn_submission]
        for name, tables in ensembles.items():
            table = ensemble_tables(tables=tables, method="geometric")
            print("\n".join(_rows(f"{name} (geometric mean)", table, truth=truth, tmp=tmp, seconds="as above")), flush=True)


def _cnn(corpus: Path, *, cnn_run: Path | None, tmp: Path) -> tuple[pd.DataFrame, float | str]:
    """The cpu-small CNN's test submission: trained here, or predicted with a given run."""
    from dawnchorus.config import load_preset
    from dawnchorus.infer import predict
    from dawnchorus.train import train

    seconds: float | str = "given run"
    if cnn_run is None:
        started = time.perf_counter()
        cnn_run = train(data_dir=corpus, out_dir=tmp / "cnn", config=load_preset("cpu-small"))
        seconds = time.perf_counter() - started
    return predict(run_dirs=[cnn_run], audio_dir=corpus / "test").submission, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="BirdNET threads for the extraction")
    parser.add_argument("--hop-s", type=float, help="hop of the presets' windows (default: the presets')")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--speed-recordings", type=int, default=2, help="recordings timed per speed configuration")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--cnn-run", type=Path, help="a cpu-small run trained on this corpus (default: train one, ~15 min)")
    parser.add_argument("--skip-cnn", action="store_true", help="leave out the CNN and its ensembles")
    parser.add_argument("--corpus-seed", type=int, default=1, help="seed of the 300/200 synthetic corpus (1: the standard one)")
    args = parser.parse_args()
    corpus = standard_corpus(seed=args.corpus_seed)
    print(f"# BirdNET embeddings + heads ({stamp()}, corpus {corpus})")
    if not args.skip_speed:
        speed(corpus, recordings=args.speed_recordings, hop_s=args.hop_s or 3.0)
    if not args.skip_accuracy:
        accuracy(corpus, threads=args.threads, hop_s=args.hop_s, folds=args.folds, cnn_run=args.cnn_run, skip_cnn=args.skip_cnn)


if __name__ == "__main__":
    main()
