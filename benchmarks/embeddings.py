"""BirdNET embeddings with small heads on the standard synthetic corpus: accuracy and speed.

Extraction speed: windows/s and real-time factor of the BirdNET model (3 s windows, hop 3 s)
for 1 and 2 threads, one window per call vs batches of 16, plus decode + resample to 48 kHz.
Accuracy: embeddings of the labelled training and all test recordings are cached under
``bench_data/embeddings`` (resumable: an interrupted run goes on where it stopped), then the
linear probe and the masked MLP head are trained with 5 folds by recording; test LWLRAP/mAP
of the fold-averaged heads, raw and with the host paper's prior (odds scaling, reference 0.5
as in ``postprocess``'s default, and reference = the run's mean out-of-fold score, as
``dawnchorus predict --prior`` does).

    nice -n 19 python benchmarks/embeddings.py [--threads 2] [--speed-recordings 2] [--skip-speed]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp, standard_corpus  # noqa: E402

from dawnchorus.data import find_audio_files, load_audio, rfcx_test_prevalence  # noqa: E402
from dawnchorus.embed_heads import predict_embeddings, train_embedding_head  # noqa: E402
from dawnchorus.embeddings import BIRDNET_SAMPLE_RATE_HZ, birdnet_embedder, embed_directory, embed_wave  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.postprocess import postprocess, reference_from_run  # noqa: E402
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


def accuracy(corpus: Path, *, threads: int, hop_s: float, folds: int) -> None:
    cache = BENCH_DATA / "embeddings"
    embedder = birdnet_embedder(threads=threads, batch_size=16)
    truth = corpus / "truth" / "test_labels.csv"
    print(f"\n## Accuracy (BirdNET {embedder.name}, hop {hop_s:g} s, {folds} folds by recording, cache {cache})\n")
    for split in ("train", "test"):
        started = time.perf_counter()
        summary = embed_directory(audio_dir=corpus / split, cache_dir=cache, embedder=embedder, hop_s=hop_s, progress=True)
        print(f"extract {split}: {summary} in {time.perf_counter() - started:.0f} s ({threads} threads)")
    print("\n| head | train time (all folds) | masked val AUC (mean over folds) | test LWLRAP | test mAP |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for head in ("linear", "mlp"):
            run_dir = Path(tmp) / head
            started = time.perf_counter()
            train_embedding_head(data_dir=corpus, out_dir=run_dir, head=head, cache_dir=cache, folds=folds, hop_s=hop_s,
                                 threads=threads, embedder=embedder)
            train_s = time.perf_counter() - started
            val_auc = pd.read_csv(run_dir / "history.csv")["val_auc"].mean()
            result = predict_embeddings(run_dir=run_dir, audio_dir=corpus / "test", cache_dir=cache, embedder=embedder)
            reference = reference_from_run(run_dir, columns=result.species.columns)
            variants = {
                "raw": result.submission,
                "+ host prior (reference 0.5)": postprocess(scores=result.submission, prior=rfcx_test_prevalence()).scores,
                "+ host prior (reference = OOF mean)": postprocess(scores=result.submission, prior=rfcx_test_prevalence(),
                                                                    reference=reference).scores,
            }
            for name, table in variants.items():
                report = evaluate(truth_path=truth, pred_path=write_submission(Path(tmp) / "sub.csv", table))
                timing = f"{train_s:.1f} s" if name == "raw" else "+ <1 s"
                auc = f"{val_auc:.3f}" if name == "raw" else "—"
                print(f"| {head} {name} | {timing} | {auc} | {report.lwlrap:.4f} | {report.map:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="BirdNET threads for the extraction")
    parser.add_argument("--hop-s", type=float, default=3.0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--speed-recordings", type=int, default=2, help="recordings timed per speed configuration")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    corpus = standard_corpus()
    print(f"# BirdNET embeddings + heads ({stamp()})")
    if not args.skip_speed:
        speed(corpus, recordings=args.speed_recordings, hop_s=args.hop_s)
    if not args.skip_accuracy:
        accuracy(corpus, threads=args.threads, hop_s=args.hop_s, folds=args.folds)


if __name__ == "__main__":
    main()
