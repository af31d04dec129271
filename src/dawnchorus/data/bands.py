"""Each species' frequency band, learnt from its training boxes.

Detections exported for Raven or Audacity carry a low and a high frequency; drawing them over
the band where the species was annotated calling puts the box on the call instead of over the
whole spectrogram, which is what a reviewer scanning hundreds of detections needs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_write_text
from ..errors import InputError
from .annotations import Box
from .tables import read_text_table

BAND_COLUMNS = ("species_id", "f_min_hz", "f_max_hz")


def species_bands(boxes: Iterable[Box]) -> dict[int, tuple[float, float]]:
    """Species id -> (lowest f_min_hz, highest f_max_hz) over its TP boxes.

    FP boxes are left out: they mark where a detector was wrong, often in another species' band.
    """
    bands: dict[int, tuple[float, float]] = {}
    for box in boxes:
        if box.label != 1:
            continue
        low, high = bands.get(box.species_id, (box.f_min_hz, box.f_max_hz))
        bands[box.species_id] = (min(low, box.f_min_hz), max(high, box.f_max_hz))
    return dict(sorted(bands.items()))


def write_bands_csv(bands: dict[int, tuple[float, float]], path: str | Path) -> Path:
    """``species_id,f_min_hz,f_max_hz``; replaced in one step so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(BAND_COLUMNS)]
    lines += [f"{int(species_id)},{float(low):.3f},{float(high):.3f}" for species_id, (low, high) in sorted(bands.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_bands_csv(path: str | Path) -> dict[int, tuple[float, float]]:
    """Read a table written by :func:`write_bands_csv`; every bad line is reported at once."""
    path = Path(path)
    frame = read_text_table(path, what="species band file", header=",".join(BAND_COLUMNS))
    missing = [c for c in BAND_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected header {','.join(BAND_COLUMNS)} "
                         f"(found: {','.join(frame.columns)})")
    bands: dict[int, tuple[float, float]] = {}
    problems: list[str] = []
    for line, row in zip(frame.index, frame.to_dict("records")):
        try:
            species_id = int(str(row["species_id"]).strip())
            low, high = float(row["f_min_hz"]), float(row["f_max_hz"])
        except ValueError:
            problems.append(f"line {line}: species_id must be an integer and f_min_hz, f_max_hz numbers")
            continue
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or low >= high:
            problems.append(f"line {line}: band {low}..{high} Hz must satisfy 0 <= f_min_hz < f_max_hz")
        elif species_id in bands:
            problems.append(f"line {line}: species {species_id} is listed twice; keep one band per species")
        else:
            bands[species_id] = (low, high)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems) + "; fix these lines or rebuild the file from the labels")
    return bands
