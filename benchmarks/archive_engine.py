"""The archive engine on this machine: peak memory against file length, throughput, resume cost,
and the job path against the in-memory Kaggle path.

    python benchmarks/archive_engine.py memory      # 60 s vs 2 h (and --long-hours 24) files: peak RSS of predict
    python benchmarks/archive_engine.py throughput  # 1,000 short files and one 2 h file, --workers 1 and 2; resume
    python benchmarks/archive_engine.py kaggle      # 250 one-minute files: predict --out sub.csv vs --out DIR

The model is the ``cpu-small`` network, randomly initialised (speed and memory do not depend
on the weights). Every measurement runs ``dawnchorus predict`` in a fresh process, start-up
included. Audio is generated into ``bench_data/archive`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.config import load_preset, save_config  # noqa: E402
from dawnchorus.data.species import SpeciesTable, write_species_csv  # noqa: E402

ROOT = BENCH_DATA / "archive"
CLI = str(Path(sys.executable).with_name("dawnchorus"))


def untrained_run(out: Path) -> Path:
    """A run directory with one randomly initialised cpu-small fold."""
    from safetensors.torch import save_file

    from dawnchorus.models import ClassLayout, build_model

    if (out / "fold0" / "model.safetensors").is_file():
        return out
    config = load_preset("cpu-small")
    species = SpeciesTable.from_ids(list(range(24)))
    layout = ClassLayout.for_species(species.species_ids)
    (out / "fold0").mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    (out / "layout.json").write_text(json.dumps(layout.to_dict()))
    write_species_csv(species, out / "species.csv")
    model = build_model(features=config.features, model=config.model, n_classes=len(layout))
    save_file(model.state_dict(), str(out / "fold0" / "model.safetensors"))
    return out


def soundscape(path: Path, *, hours: float, rate: int, seed: int = 0) -> Path:
    """Noise with chirps, written block by block so a 24-hour file never sits in memory."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = rate * 60
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for minute in range(int(round(hours * 60))):
            t = np.arange(block) / rate
            chirp = 0.2 * np.sin(2 * np.pi * (2000 + 500 * np.sin(2 * np.pi * 0.2 * t)) * t) * (rng.random() < 0.5)
            handle.write((0.05 * rng.standard_normal(block) + chirp).astype(np.float32))
    return path


def timed(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one CLI run."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0,):
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds, int(result.stderr.strip().splitlines()[-1]) // 1024


def predict_job(run: Path, audio: Path, out: Path, *extra: str) -> list[str]:
    return [CLI, "predict", "--run", str(run), "--audio", str(audio), "--out", str(out), "--format", "submission,summary", *extra]


def memory(args) -> None:
    run = untrained_run(ROOT / "run")
    rows = []
    for label, hours, rate in (("60 s", 1 / 60, 48000), ("2 h", 2.0, 48000), (f"{args.long_hours:g} h", args.long_hours, 16000)):
        if hours == args.long_hours and args.long_hours <= 0:
            continue
        folder = ROOT / f"memory_{label.replace(' ', '')}"
        soundscape(folder / "20240401_000000.WAV", hours=hours, rate=rate)
        out = ROOT / f"job_memory_{label.replace(' ', '')}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak_mb = timed(predict_job(run, folder, out))
        rows.append((label, rate, seconds, peak_mb, hours * 3600 / seconds))
        print(f"{label} @ {rate} Hz: {seconds:.1f} s, peak RSS {peak_mb} MB, {hours * 3600 / seconds:.0f}x real time", flush=True)
    base = rows[0][3]
    print(f"\n| file | rate | wall | peak RSS | vs 60 s | x real time |\n|---|---|---|---|---|---|")
    for label, rate, seconds, peak_mb, speed in rows:
        print(f"| {label} | {rate} Hz | {seconds:.1f} s | {peak_mb} MB | {peak_mb / base:.2f} | {speed:.0f} |")
    print(f"({stamp()})")


def throughput(args) -> None:
    run = untrained_run(ROOT / "run")
    short = ROOT / "short"
    if not short.is_dir():
        for i in range(args.files):
            _short_file(short, i, args)
    long = ROOT / "long2h"
    soundscape(long / "20240401_000000.WAV", hours=2.0, rate=48000)
    print("| archive | workers | wall | audio h per wall h | x real time |\n|---|---|---|---|---|")
    for name, audio, hours in (("1,000 short files", short, args.files * args.short_s / 3600), ("one 2 h file", long, 2.0)):
        for workers in (1, 2):
            out = ROOT / f"job_{audio.name}_w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, _ = timed(predict_job(run, audio, out, "--workers", str(workers)))
            print(f"| {name} | {workers} | {seconds:.1f} s | {hours / (seconds / 3600):.0f} | {hours * 3600 / seconds:.0f} |", flush=True)
    out = ROOT / f"job_{short.name}_w1"
    seconds, _ = timed(predict_job(run, short, out))
    print(f"\nresume on the finished 1,000-file job (nothing left to do, outputs rewritten): {seconds:.1f} s ({stamp()})")


def _short_file(root: Path, i: int, args) -> None:
    rng = np.random.default_rng(i)
    path = root / f"site{i % 4}" / f"{20240401 + i // 250}" / f"{20240401 + i // 250}_{i % 250:06d}.WAV"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.05 * rng.standard_normal(int(48000 * args.short_s))).astype(np.float32), 48000, subtype="PCM_16")


def kaggle(args) -> None:
    run = untrained_run(ROOT / "run")
    corpus = BENCH_DATA / "synth_2_250_seed9"
    if not (corpus / "test").is_dir():
        subprocess.run([CLI, "synth", "--out", str(corpus), "--n-train", "2", "--n-test", "250", "--seed", "9"], check=True)
    test = corpus / "test"
    in_memory, _ = timed([CLI, "predict", "--run", str(run), "--audio", str(test), "--out", str(ROOT / "kaggle_sub.csv")])
    out = ROOT / "job_kaggle"
    shutil.rmtree(out, ignore_errors=True)
    job, peak = timed(predict_job(run, test, out))
    print(f"250 one-minute files: in memory (--out sub.csv) {in_memory:.1f} s ({250 * 60 / in_memory:.0f}x real time), "
          f"job folder (--out DIR) {job:.1f} s ({250 * 60 / job:.0f}x real time); ratio {job / in_memory:.2f} ({stamp()})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["memory", "throughput", "kaggle"])
    parser.add_argument("--long-hours", type=float, default=24.0, help="memory: also a file this long (0: skip)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--short-s", type=float, default=10.0, help="throughput: length of each short file")
    args = parser.parse_args()
    {"memory": memory, "throughput": throughput, "kaggle": kaggle}[args.what](args)


if __name__ == "__main__":
    main()
