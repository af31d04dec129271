"""Commands on score tables: prior-aware post-processing and ensembles."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from ._app import app, friendly_errors


def postprocess_and_report(*, scores, source: str, out: Path, prior_path: Optional[Path], run_dir: Optional[Path], **options):
    """Shared by 'postprocess' and 'predict': rescale, print the factors, write the priors sidecar."""
    from ..postprocess import postprocess as postprocess_scores
    from ..postprocess import read_prior_table, reference_from_run, species_columns_of

    columns = species_columns_of(scores, source=source)
    prior_table = read_prior_table(prior_path, columns=columns) if prior_path is not None else None
    reference = reference_from_run(run_dir, columns=columns) if run_dir is not None else None
    result = postprocess_scores(scores=scores, prior=prior_table, reference=reference, source=source, **options)
    reference_text = f"mean out-of-fold prediction in {run_dir}" if run_dir is not None else "0.5"
    typer.echo(f"{result.source}; reference prior: {reference_text}")
    cells = [f"s{r.species_id}: {'-' if r.prevalence != r.prevalence else f'{r.prevalence:.3f}'} x{r.factor:.3g}"
             for r in result.species.itertuples()]  # prevalence is NaN (shown '-') with a fixed --factor
    typer.echo("species: prevalence x factor")
    for first in range(0, len(cells), 6):
        typer.echo("  " + "   ".join(cells[first : first + 6]))
    sidecar = out.with_suffix(".priors.csv")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    result.species.to_csv(sidecar, index=False, float_format="%.6g")
    typer.echo(f"wrote {sidecar}")
    return result.scores


@app.command("postprocess")
@friendly_errors
def postprocess_command(
    pred: Path = typer.Option(..., "--pred", help="Submission CSV recording_id,s0..sN to rescale."),
    out: Path = typer.Option(..., "--out", help="Rescaled submission CSV; the factors go to <out>.priors.csv."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="CSV species_id,prevalence of the test set, or the built-in rfcx-host-paper (default: estimate it)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Training run whose oof.csv gives the reference prior (default: 0.5)."),
    method: str = typer.Option("odds", "--method", help="odds, power or linear."),
    factor: Optional[float] = typer.Option(None, "--factor", help="One fixed factor for every species instead of a prior."),
    estimate: str = typer.Option("cc", "--estimate", help="Prior estimator without --prior: cc (classify and count), em or count."),
    labels_per_recording: Optional[float] = typer.Option(None, "--labels-per-recording", help="Species per recording for --estimate count (default: the model's own expected count)."),
    gamma: float = typer.Option(0.5, "--gamma", help="Exponent of the power scaling, p * (prior/reference)**gamma."),
    cc_threshold: Optional[float] = typer.Option(None, "--cc-threshold", help="Score threshold of --estimate cc (default: the --run's out-of-fold choice in calibration.json, else 0.5)."),
    estimate_from: Optional[Path] = typer.Option(None, "--estimate-from", help="Estimate on this CSV of the same recordings instead, e.g. the first model's scores for a pseudo-label student ('predict --postprocess' counts the first model's persistent windows by itself)."),
):
    """Rescale a submission to the test prevalences: from a prior table, or estimated from the scores."""
    from ..metrics import read_score_table
    from ..priors import CC_THRESHOLD, threshold_from_run
    from ..submission import write_submission

    scores = read_score_table(path=pred, kind="submission")
    if cc_threshold is None:
        cc_threshold = threshold_from_run(run) if run is not None else CC_THRESHOLD
    elif not 0.0 < cc_threshold < 1.0:
        raise InputError(f"--cc-threshold must be between 0 and 1; got {cc_threshold}")
    evidence = read_score_table(path=estimate_from, kind="submission") if estimate_from is not None else None
    options = {"method": method, "factor": factor, "estimate": estimate, "labels_per_recording": labels_per_recording,
               "gamma": gamma, "cc_threshold": cc_threshold, "estimate_from": evidence}
    result = postprocess_and_report(scores=scores, source=str(pred), out=out, prior_path=prior, run_dir=run, **options)
    write_submission(out, result)
    typer.echo(f"wrote {out} ({len(result)} recordings)")


@app.command()
@friendly_errors
def ensemble(
    tables: List[Path] = typer.Argument(..., help="Submission CSVs with the same recordings and species."),
    out: Path = typer.Option(..., "--out", help="Ensembled submission CSV (rows in the first file's order)."),
    method: str = typer.Option("mean", "--method", help="mean, rank or geometric."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per file, comma-separated (default: equal)."),
):
    """Combine several submissions into one by a (weighted) mean, rank mean or geometric mean."""
    from ..ensemble import ensemble_tables
    from ..metrics import read_score_table
    from ..submission import write_submission

    try:
        weight_list = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise InputError(f"--weights must be numbers separated by commas; got {weights!r}") from None
    frames = [read_score_table(path=path, kind="submission") for path in tables]
    combined = ensemble_tables(tables=frames, method=method, weights=weight_list, sources=[str(p) for p in tables])
    write_submission(out, combined)
    typer.echo(f"wrote {out} ({len(combined)} recordings, {method} of {len(tables)} tables)")
