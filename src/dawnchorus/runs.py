"""Where a run keeps its rounds: round 0 is the run directory, pseudo-label rounds are ``pseudo/roundK``.

Shared by the CNN and the embedding heads, and torch-free.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError


def pseudo_round_dirs(run_dir: str | Path) -> list[Path]:
    """Round 0 (the run itself) and every pseudo-label round under it, in order."""
    run_dir = Path(run_dir)
    rounds = sorted((p for p in (run_dir / "pseudo").glob("round*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    return [run_dir, *rounds]


def resolve_round(run_dir: str | Path, pseudo_round: int | None = None, *, weights: str = "model.safetensors") -> Path:
    """The directory of one round; by default the last one with a finished fold (``fold*/<weights>``)."""
    rounds = pseudo_round_dirs(run_dir)
    if pseudo_round is not None:
        if not 0 <= pseudo_round < len(rounds):
            raise InputError(f"{run_dir}: has pseudo-label rounds 0..{len(rounds) - 1}, not {pseudo_round}")
        return rounds[pseudo_round]
    finished = [r for r in rounds if any(r.glob(f"fold*/{weights}"))]
    return finished[-1] if finished else Path(run_dir)


def file_digest(path: str | Path) -> str:
    """Content digest of a weights file: resumed archive jobs must use the very same model."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]

