"""The typer application, its sub-command groups and the error handling every command shares."""

from __future__ import annotations

import functools
import warnings

import typer

from ..errors import DawnchorusError

app = typer.Typer(help="Find which bird and frog species call in soundscape recordings.", no_args_is_help=True, add_completion=False)
raven_app = typer.Typer(help="Convert between Raven Pro selection tables and RFCx label CSVs.", no_args_is_help=True)
cache_app = typer.Typer(help="Manage the decoded-audio cache.", no_args_is_help=True)
review_app = typer.Typer(help="Review candidate detections in the browser (TP / FP) and export them as labels.")
app.add_typer(raven_app, name="raven")
app.add_typer(cache_app, name="cache")
app.add_typer(review_app, name="review")


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

    return wrapper



def main() -> None:
    app()
