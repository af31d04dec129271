"""Commands of embedding search: index an archive's windows once, then search it by example."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ._app import ArchiveJobOptions, app, archive_job_options, friendly_errors, report_job


@app.command()
@friendly_errors
@archive_job_options()
def index(
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of recordings (FLAC, WAV, MP3, OGG; symbolic links followed)."),
    out: Path = typer.Option(..., "--out", help="Index folder: an embed job (resumable) plus ann.usearch, ann_rows.parquet, ann.json."),
    embedder: str = typer.Option("birdnet", "--embedder", help="birdnet (optional extra, non-commercial licence) or a run directory of 'dawnchorus train' (its pooled CNN features)."),
    hop_s: float = typer.Option(1.5, "--hop-s", help="Hop between windows, in seconds (the window is the embedder's)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the embedder and the index."),
    job: ArchiveJobOptions = None,
):
    """Embed every window of an archive and index the vectors for 'dawnchorus search' (finished files are kept)."""
    from ..search import index_archive

    report_job(index_archive(audio_root=audio, out_dir=out, embedder=embedder, hop_s=hop_s, threads=threads, **job.engine_kwargs()))


@app.command()
@friendly_errors
def search(
    index_dir: Path = typer.Option(..., "--index", help="Index folder from 'dawnchorus index'."),
    query: Path = typer.Option(..., "--query", help="Example calls: a label CSV (TP rows), a Raven selection table, or an audio clip."),
    out: Path = typer.Option(..., "--out", help="candidates.csv to write (the columns of 'match'; 'dawnchorus review --candidates' serves it)."),
    top: int = typer.Option(100, "--top", help="Candidates per species (one per call: overlapping windows are merged)."),
    query_audio: Optional[Path] = typer.Option(None, "--query-audio", help="Where the query's recordings are (default: the archive the index was built on), or the one recording a Raven table describes."),
    species_id: Optional[int] = typer.Option(None, "--species", help="The species of an audio clip query; for boxes, keep only this species."),
    songtype_id: int = typer.Option(1, "--songtype", help="The song type of an audio clip query."),
    species_list: Optional[Path] = typer.Option(None, "--species-list", help="CSV species_id,scientific_name: names in a Raven table's Species column."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the embedder and the search."),
):
    """Find the windows of an indexed archive nearest to example calls, one candidate per call."""
    from ..atomic import atomic_write_text
    from ..batch.journal import read_job
    from ..data.species import read_species_csv
    from ..search import open_index, read_queries, resolve_index_embedder, search_index

    opened = open_index(index_dir)
    started = time.perf_counter()
    audio_root = query_audio if query_audio is not None else (read_job(index_dir) or {}).get("audio_root")
    species = read_species_csv(species_list) if species_list is not None else None
    queries = read_queries(query, audio_root=audio_root, species_id=species_id, songtype_id=songtype_id, species=species)
    embedder = resolve_index_embedder(opened.meta["embedder"], threads=threads)
    candidates = search_index(index=opened, queries=queries, embedder=embedder, top=top, threads=threads)
    atomic_write_text(out, candidates.to_csv(index=False, float_format="%.4f"))
    typer.echo(f"{len(queries)} example(s), {len(opened)} indexed windows: {len(candidates)} candidate(s) in "
               f"{time.perf_counter() - started:.2f} s")
    typer.echo(f"wrote {out}")
