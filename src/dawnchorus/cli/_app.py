"""The typer application, its sub-command groups and the error handling every command shares."""

from __future__ import annotations

import errno
import functools
import inspect
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import typer

from ..errors import DawnchorusError, unwritable

app = typer.Typer(help="Find which bird and frog species call in soundscape recordings.", no_args_is_help=True, add_completion=False)
raven_app = typer.Typer(help="Convert between Raven Pro selection tables and RFCx label CSVs.", no_args_is_help=True)
cache_app = typer.Typer(help="Manage the decoded-audio cache.", no_args_is_help=True)
review_app = typer.Typer(help="Review candidate detections in the browser (TP / FP) and export them as labels.")
app.add_typer(raven_app, name="raven")
app.add_typer(cache_app, name="cache")
app.add_typer(review_app, name="review")


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def friendly_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = command(*args, **kwargs)
            for warning in caught:
                typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
            return result
        except DawnchorusError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            # a write outside the atomic helpers (a library's own file): still the path and the reason, not a traceback
            typer.secho(f"error: {unwritable(exc.filename or 'an output file', exc)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper



def main() -> None:
    app()


# Options every archive job (predict / embed / index / match into a job folder) shares.
CHANNEL_OPTION = typer.Option(None, "--channel", help="Archive jobs: score this channel (0 = first) instead of the mix of all channels.")
WORKERS_OPTION = typer.Option(1, "--workers", help="Archive jobs: decoding processes (1: a thread decodes ahead of the model).")
CHUNK_OPTION = typer.Option(120.0, "--chunk-s", help="Archive jobs: seconds of audio read at a time (memory does not grow with file length).")
RETRY_OPTION = typer.Option(False, "--retry-failed", help="Archive jobs: try the files that failed before again.")
FORCE_OPTION = typer.Option(False, "--force", help="Archive jobs: discard results made with other settings in the job folder.")
ENGINE_OPTION = typer.Option("local", "--engine", help="Archive jobs: local (this machine) or ray (a Ray cluster; pip install 'dawnchorus[ray]').")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", help="--engine ray: the cluster to join (e.g. auto, or HOST:6379); default: a private Ray on this machine.")
RAY_SCORERS_OPTION = typer.Option(1, "--ray-scorers", help="--engine ray: scoring actors, each holding one copy of the detector.")
RAY_THREADS_OPTION = typer.Option(1, "--ray-threads-per-scorer", help="--engine ray: CPU threads (and CPUs reserved) per scoring actor.")
RAY_GPUS_OPTION = typer.Option(0.0, "--ray-gpus-per-scorer", help="--engine ray: GPUs per scoring actor (e.g. 1, or 0.5 to share one).")
FAILED_EXIT_CODE = 3


def ray_options(engine: str, address, scorers: int, threads: int, gpus: float):
    """The Ray settings of an archive job, or None for the local engine."""
    from ..batch.engine import RayOptions
    from ..errors import InputError

    if engine not in ("local", "ray"):
        raise InputError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        if address is not None or scorers != 1 or threads != 1 or gpus:
            raise InputError("--ray-address, --ray-scorers, --ray-threads-per-scorer and --ray-gpus-per-scorer need --engine ray")
        return None
    return RayOptions(address=address, scorers=scorers, threads_per_scorer=threads, gpus_per_scorer=gpus)


@dataclass(frozen=True)
class ArchiveJobOptions:
    """The archive engine's options as the command line gave them (``archive_job_options``)."""

    channel: Optional[int]
    workers: int
    chunk_s: float
    retry_failed: bool
    force: bool
    ray: Any  # batch.engine.RayOptions, or None for the local engine
    given: tuple[str, ...]  # the flags set away from their defaults, for commands that refuse them without a job folder

    def engine_kwargs(self) -> dict:
        """Keyword arguments of every ``batch.jobs`` function."""
        return {"channel": self.channel, "workers": self.workers, "chunk_s": self.chunk_s, "retry_failed": self.retry_failed,
                "force": self.force, "progress": sys.stderr.isatty(), "ray": self.ray}


def archive_job_options(*, workers: Any = WORKERS_OPTION):
    """Give a command the archive engine's options; it receives them as ``job: ArchiveJobOptions``."""
    added = {"channel": (Optional[int], CHANNEL_OPTION), "workers": (int, workers), "chunk_s": (float, CHUNK_OPTION),
             "retry_failed": (bool, RETRY_OPTION), "force": (bool, FORCE_OPTION), "engine": (str, ENGINE_OPTION),
             "ray_address": (Optional[str], RAY_ADDRESS_OPTION), "ray_scorers": (int, RAY_SCORERS_OPTION),
             "ray_threads": (int, RAY_THREADS_OPTION), "ray_gpus": (float, RAY_GPUS_OPTION)}

    def decorate(command):
        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {name: kwargs.pop(name) for name in added}
            given = tuple(info.param_decls[0] for name, (_, info) in added.items() if values[name] != info.default)
            ray = ray_options(values["engine"], values["ray_address"], values["ray_scorers"], values["ray_threads"],
                              values["ray_gpus"])
            return command(**kwargs, job=ArchiveJobOptions(values["channel"], values["workers"], values["chunk_s"],
                                                           values["retry_failed"], values["force"], ray, given))

        own = [p for p in inspect.signature(command).parameters.values() if p.name != "job"]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind)
                 for name, (kind, info) in added.items()]
        wrapper.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra)
        wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "job"},
                                   **{name: kind for name, (kind, _) in added.items()}}
        return wrapper

    return decorate


def report_job(summary) -> None:
    """Print an archive job's summary; files that failed make the exit status non-zero."""
    typer.echo(str(summary))
    for path in summary.outputs:
        typer.echo(f"wrote {path}")
    if summary.failed:
        typer.secho(f"{summary.failed} file(s) failed: see {summary.out_dir / 'failed.csv'}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=FAILED_EXIT_CODE)
