"""``dawnchorus pretrain``: a backbone learned from the user's own unlabelled recordings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from ._app import app, friendly_errors


@app.command()
@friendly_errors
def pretrain(
    audio: Path = typer.Option(..., "--audio", help="Folder of unlabelled recordings (searched recursively), e.g. the whole archive."),
    out: Path = typer.Option(..., "--out", help="Backbone weights to write (.safetensors); train with --set model.weights=OUT."),
    preset: str = typer.Option("cpu-small", "--preset", help="Preset (or YAML) whose features and backbone are pretrained."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field of the preset: section.key=value."),
    steps: int = typer.Option(1000, "--steps", help="Contrastive steps (a rerun continues an interrupted one)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per step; the other pairs of a step are the negatives."),
    max_gap_s: float = typer.Option(5.0, "--max-gap-s", help="The two crops of a pair start at most this far apart."),
):
    """Self-supervised (contrastive) pretraining of a backbone on unlabelled audio; no labels, no download."""
    from ..config import load_config, load_preset, with_overrides
    from ..pretrain import PretrainSettings, pretrain as run_pretraining

    base = load_config(preset) if str(preset).endswith((".yaml", ".yml")) else load_preset(preset)
    config = with_overrides(base, list(overrides))
    settings = PretrainSettings(steps=steps, batch_size=batch_size, max_gap_s=max_gap_s)
    weights = run_pretraining(audio_dir=audio, out=out, config=config, settings=settings, progress=sys.stderr.isatty())
    typer.echo(f"wrote {weights}; train with --set model.weights={weights}")
