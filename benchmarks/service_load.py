"""Bounded local load: the review server under concurrent reviewers, a burst of spectrograms, and
``predict`` over thousands of tiny files with its open descriptors and memory sampled.

    python benchmarks/service_load.py review               # 8 clients x 250 decisions; 200 spectrograms at once
    python benchmarks/service_load.py predict --files 5000 # one archive job; descriptors, RSS, files/s over time

Everything runs on 127.0.0.1 in fresh processes, start-up included; audio is generated into
``bench_data/load`` (ignored by git). ``tests/robustness/test_load.py`` runs the same code at a
size the suite can afford and checks the invariants (nothing lost, every image returned, bounds).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

CLI = str(Path(sys.executable).with_name("dawnchorus"))
CANDIDATE_HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max,score,template_id\n"
RATE_HZ = 16000


def review_corpus(root: Path, *, candidates: int, recordings: int = 4, duration_s: float = 60.0) -> Path:
    """Noise recordings with ``candidates`` distinct 1 s boxes spread over them."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for r in range(recordings):
        sf.write(audio / f"rec{r}.flac", (0.05 * rng.standard_normal(int(RATE_HZ * duration_s))).astype(np.float32), RATE_HZ)
    rows = [f"rec{i % recordings},{i % 5},1,{(i // recordings) * 0.2 % (duration_s - 1):.2f},500,"
            f"{(i // recordings) * 0.2 % (duration_s - 1) + 1:.2f},4000,0.5,t{i}\n" for i in range(candidates)]
    (root / "candidates.csv").write_text(CANDIDATE_HEADER + "".join(rows))
    return root


def start_review(root: Path) -> tuple[subprocess.Popen, str, int]:
    """``dawnchorus review`` on a free port of 127.0.0.1; returns the process, host:port and the port."""
    process = subprocess.Popen([CLI, "review", "--candidates", str(root / "candidates.csv"), "--audio", str(root / "audio"),
                                "--db", str(root / "review.sqlite"), "--port", "0", "--reviewer", "load"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    for line in process.stdout:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if found:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining its output
            return process, f"127.0.0.1:{found.group(1)}", int(found.group(1))
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("the review server did not print its address")


def post_decisions(address: str, *, clients: int, per_client: int, candidates: int) -> list[float]:
    """Each client sends ``per_client`` decisions over one keep-alive connection; returns latencies (s).
    The reviewer name carries client and sequence number, so lost or doubled decisions show in the DB."""
    host, port = address.split(":")

    def client(number: int) -> list[float]:
        connection, latencies = http.client.HTTPConnection(host, int(port), timeout=60), []
        for seq in range(per_client):
            body = json.dumps({"decision": ("tp", "fp", "skip")[seq % 3], "reviewer": f"c{number}-{seq}"})
            started = time.perf_counter()
            connection.request("POST", f"/api/candidates/{(number * per_client + seq) % candidates + 1}/decision", body=body,
                               headers={"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"decision {number}-{seq}: HTTP {response.status}")
        connection.close()
        return latencies

    with ThreadPoolExecutor(clients) as pool:
        return [latency for result in pool.map(client, range(clients)) for latency in result]


def decisions_in_db(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as connection:
        return [row[0] for row in connection.execute("SELECT reviewer FROM decisions")]


def burst_spectrograms(address: str, ids: list[int]) -> list[tuple[int, bytes]]:
    """Every id's spectrogram requested at the same moment (one connection each)."""
    host, port = address.split(":")
    barrier = threading.Barrier(len(ids))

    def fetch(candidate_id: int) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(host, int(port), timeout=300)
        barrier.wait()
        connection.request("GET", f"/api/candidates/{candidate_id}/spectrogram.png")
        response = connection.getresponse()
        return response.status, response.read()

    with ThreadPoolExecutor(len(ids)) as pool:
        return list(pool.map(fetch, ids))


def process_memory_kb(pid: int) -> dict[str, int]:
    """Current and peak resident memory of a process (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_kb": int(fields["VmHWM"].split()[0])}


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tiny_archive(root: Path, *, files: int) -> Path:
    """``files`` short WAVs (0.5-2 s, 16 kHz) in site/day folders, written once."""
    marker = root / f".complete_{files}"
    if marker.is_file():
        return root
    rng = np.random.default_rng(1)
    for i in range(files):
        path = root / f"site{i % 8}" / f"day{i // 500:02d}" / f"{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.05 * rng.standard_normal(int(RATE_HZ * (0.5 + 1.5 * rng.random())))).astype(np.float32), RATE_HZ,
                 subtype="PCM_16")
    marker.touch()
    return root


def watch_predict(command: list[str], *, job_dir: Path, every_s: float = 0.25) -> dict:
    """Run an archive job, sampling its descriptors, memory and finished files until it ends."""
    journal = job_dir / "journal.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, started = [], time.perf_counter()
    while process.poll() is None:
        try:
            done = sum(1 for _ in journal.open()) if journal.is_file() else 0
            samples.append({"t_s": time.perf_counter() - started, "fds": open_descriptors(process.pid), "done": done,
                            **process_memory_kb(process.pid)})
        except (FileNotFoundError, ProcessLookupError, KeyError):  # the process is ending (a zombie has no VmRSS)
            pass
        time.sleep(every_s)
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"predict failed ({process.returncode}): {stderr[-2000:]}")
    return {"seconds": time.perf_counter() - started, "samples": samples}


def rate_by_quarter(samples: list[dict]) -> list[float]:
    """Files finished per second in each quarter of the files (a slowdown shows as falling rates)."""
    working = [s for s in samples if s["done"] > 0]
    if len(working) < 8:
        return []
    total = working[-1]["done"]
    rates, previous = [], working[0]
    for quarter in range(1, 5):
        reached = next(s for s in working if s["done"] >= total * quarter / 4)
        rates.append((reached["done"] - previous["done"]) / max(reached["t_s"] - previous["t_s"], 1e-9))
        previous = reached
    return rates


def review(args) -> None:
    root = review_corpus(BENCH_DATA / "load" / f"review_{int(time.time())}", candidates=max(args.spectrograms, 250))
    process, address, _ = start_review(root)
    try:
        latencies = np.array(post_decisions(address, clients=args.clients, per_client=args.per_client, candidates=250))
        reviewers = decisions_in_db(root / "review.sqlite")
        expected = {f"c{c}-{s}" for c in range(args.clients) for s in range(args.per_client)}
        before = process_memory_kb(process.pid)
        started = time.perf_counter()
        images = burst_spectrograms(address, list(range(1, args.spectrograms + 1)))
        burst_s = time.perf_counter() - started
        after = process_memory_kb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {"decisions": len(reviewers), "lost": len(expected - set(reviewers)), "duplicated": len(reviewers) - len(set(reviewers)),
              "p50_ms": float(np.percentile(latencies, 50) * 1000), "p99_ms": float(np.percentile(latencies, 99) * 1000),
              "decisions_per_s": float(len(latencies) / latencies.sum() * args.clients),
              "images_ok": sum(1 for status, body in images if status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"),
              "burst_s": burst_s, "rss_before_mb": before["rss_kb"] / 1024, "peak_after_burst_mb": after["peak_kb"] / 1024}
    print(json.dumps(result, indent=1))
    print(f"python benchmarks/service_load.py review --clients {args.clients} --per-client {args.per_client} "
          f"--spectrograms {args.spectrograms}; {stamp()}")


def predict(args) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from archive_engine import untrained_run

    archive = tiny_archive(BENCH_DATA / "load" / f"tiny_{args.files}", files=args.files)
    run = untrained_run(BENCH_DATA / "load" / "run")
    job = BENCH_DATA / "load" / f"job_{int(time.time())}"
    watched = watch_predict([CLI, "predict", "--run", str(run), "--audio", str(archive), "--out", str(job), "--format",
                             "submission,summary"], job_dir=job)
    samples = watched["samples"]
    result = {"files": args.files, "seconds": watched["seconds"], "fds_min": min(s["fds"] for s in samples),
              "fds_max": max(s["fds"] for s in samples), "rss_first_quarter_mb": samples[len(samples) // 4]["rss_kb"] / 1024,
              "rss_last_mb": samples[-1]["rss_kb"] / 1024, "peak_mb": max(s["peak_kb"] for s in samples) / 1024,
              "files_per_s_by_quarter": [round(r, 1) for r in rate_by_quarter(samples)]}
    print(json.dumps(result, indent=1))
    print(f"python benchmarks/service_load.py predict --files {args.files}; {stamp()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    r = commands.add_parser("review")
    r.add_argument("--clients", type=int, default=8)
    r.add_argument("--per-client", type=int, default=250)
    r.add_argument("--spectrograms", type=int, default=200)
    p = commands.add_parser("predict")
    p.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    {"review": review, "predict": predict}[args.command](args)


if __name__ == "__main__":
    main()
