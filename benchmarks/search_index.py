"""Embedding search: index build speed and size per hour of audio, and search latency over
1,000 hours.

    python benchmarks/search_index.py                 # 250 one-minute files, then 1,000 h of generated vectors
    python benchmarks/search_index.py --hours 100     # a smaller generated index
    python benchmarks/search_index.py --embedder birdnet --hours 100   # BirdNET (optional extra): 1024-d vectors
    python benchmarks/search_index.py --dim 1024 --hours 1000        # step 2 alone, at BirdNET's dimension

1. ``dawnchorus index`` over the 250 one-minute files of `synth --seed 9` with the untrained
   ``cpu-small`` run as embedder (speed does not depend on the weights): wall time, audio hours
   per wall hour, and bytes per audio hour of the parts and of the index.
2. An index of ``--hours`` of audio at the default 1.5 s hop, from generated vectors of the same
   dimension (clustered, so the graph has structure to exploit): build time, then the latency of
   one search (the neighbours of a 3-vector query, non-maximum suppression, top 100), median of 20.
   Embedding the query itself (one CNN pass) is not included; it is measured in step 1's rate.
Nothing generated is committed; it lives in bench_data/.
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
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from archive_engine import ROOT, untrained_run  # noqa: E402
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.embeddings import Embedder  # noqa: E402
from dawnchorus.search.index import AnnIndexWriter, open_index  # noqa: E402
from dawnchorus.search.nearest import search_vectors  # noqa: E402
from dawnchorus.search.queries import Query  # noqa: E402

CLI = str(Path(sys.executable).with_name("dawnchorus"))
HOP_S, THREADS = 1.5, 2


def folder_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def index_real_files(run: Path | str) -> tuple[dict, int]:
    corpus = BENCH_DATA / "synth_2_250_seed9"
    if not (corpus / "test").is_dir():
        subprocess.run([CLI, "synth", "--out", str(corpus), "--n-train", "2", "--n-test", "250", "--seed", "9"], check=True)
    out = BENCH_DATA / "search" / f"index_250_{Path(run).name}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([CLI, "index", "--audio", str(corpus / "test"), "--out", str(out), "--embedder", str(run), "--threads",
                    str(THREADS), "--hop-s", str(HOP_S)], check=True, capture_output=True)
    wall = time.perf_counter() - started
    opened = open_index(out)
    hours = 250 / 60
    return {"files": 250, "audio_h": round(hours, 2), "wall_s": round(wall, 1), "audio_h_per_wall_h": round(hours / (wall / 3600)),
            "windows": len(opened), "dim": opened.meta["dim"],
            "parts_mb_per_audio_h": round(folder_bytes(out, "parts/*.parquet") / hours / 1e6, 1),
            "index_mb_per_audio_h": round((folder_bytes(out, "ann*")) / hours / 1e6, 1)}, opened.meta["dim"]


def generated_index(hours: float, dim: int) -> dict:
    out = BENCH_DATA / "search" / f"generated_{hours:g}h"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    n = int(hours * 3600 / HOP_S)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    embedder = Embedder(name="generated", embed=lambda w: w, dim=dim, sample_rate_hz=32000, window_s=3.0)
    writer = AnnIndexWriter(out_dir=out, spec="generated", embedder=embedder, hop_s=HOP_S, threads=THREADS)
    started, per_file = time.perf_counter(), 40  # one "recording" = 40 windows of 1.5 s
    for first in range(0, n, 100_000):
        count = min(100_000, n - first)
        vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, dim)).astype(np.float32)
        starts = (np.arange(first, first + count) % per_file) * HOP_S
        rows = pd.DataFrame({"recording_id": [f"rec{i // per_file}" for i in range(first, first + count)],
                             "path": "generated", "t_start_s": starts, "t_end_s": starts + 3.0, "vector": list(vectors)})
        writer.add(None, rows)
    writer.close()
    build_s = time.perf_counter() - started
    opened = open_index(out)
    queries = [Query(1, 1, Path("generated"), 0.0, 3.0, 0.0, 16000.0, None, "generated")]
    query_vectors = centres[:1] + 0.6 * rng.standard_normal((3, dim)).astype(np.float32)

    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        found = search_vectors(index=opened, queries=queries, vectors=query_vectors, owner=np.zeros(3, dtype=int), top=100,
                               threads=THREADS)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    open_index(out)
    open_s = time.perf_counter() - started
    return {"audio_h": hours, "windows": n, "dim": dim, "build_s": round(build_s, 1),
            "index_gb": round(folder_bytes(out, "ann*") / 1e9, 2), "open_s": round(open_s, 2),
            "search_s_median": round(float(np.median(latencies)), 3), "search_s_max": round(float(np.max(latencies)), 3),
            "candidates": len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1000.0)
    parser.add_argument("--embedder", default=None, help="birdnet instead of the untrained cpu-small run")
    parser.add_argument("--dim", type=int, default=None, help="skip step 1; generate vectors of this dimension")
    args = parser.parse_args()
    real, dim = index_real_files(args.embedder or untrained_run(ROOT / "run")) if args.dim is None else (None, args.dim)
    print(json.dumps({"index_250_files": real, "generated": generated_index(args.hours, dim)}, indent=1))
    embedder = f" --embedder {args.embedder}" if args.embedder else ""
    embedder += f" --dim {args.dim}" if args.dim else ""
    print(f"python benchmarks/search_index.py{embedder} --hours {args.hours:g}; {stamp()}")


if __name__ == "__main__":
    main()
