"""Review decisions to training labels: ``train_tp.csv`` / ``train_fp.csv`` that ``dawnchorus train`` reads.

Export merges into label files already in the directory: their rows are kept (in their
order), a reviewed box already there is not added twice, and a box whose latest decision
contradicts the file it is in (e.g. exported as TP, later re-marked FP) moves to the other
file. Skipped candidates are not exported. Files are replaced atomically, so an interrupted
export never leaves a half-written label file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_with
from ..data.annotations import Box, read_boxes, write_boxes
from .db import BOX_DECIMALS, decided_candidates, open_db

LABEL_FILES = {1: "train_tp.csv", 0: "train_fp.csv"}
_LABEL_OF_DECISION = {"tp": 1, "fp": 0}


@dataclass(frozen=True)
class ExportSummary:
    tp_path: Path
    fp_path: Path
    tp_added: int
    fp_added: int
    already_present: int  # reviewed boxes that were in the right file already
    moved: int  # boxes taken out of one file because the latest decision puts them in the other
    skipped: int  # reviewed boxes whose decisions were all "skip"
    tp_total: int
    fp_total: int

    def __str__(self) -> str:
        return (f"{self.tp_path}: {self.tp_total} boxes ({self.tp_added} new); "
                f"{self.fp_path}: {self.fp_total} boxes ({self.fp_added} new); "
                f"{self.already_present} already present, {self.moved} moved between files, {self.skipped} skipped")


def export_labels(*, db_path: str | Path, out_dir: str | Path) -> ExportSummary:
    """Write the latest TP/FP decisions of ``db_path`` into ``out_dir``/train_tp.csv and train_fp.csv."""
    out_dir = Path(out_dir)
    with open_db(db_path, create=False) as connection:
        decided = decided_candidates(connection)
    verdicts, skipped = _verdict_per_box(decided)
    paths = {label: out_dir / name for label, name in LABEL_FILES.items()}
    existing = {label: read_boxes(path, label=label) if path.is_file() else [] for label, path in paths.items()}

    merged: dict[int, list[Box]] = {1: [], 0: []}
    present: set[tuple] = set()
    moved = 0
    for label, boxes in existing.items():
        for box in boxes:
            key = _key(box)
            if verdicts.get(key, label) != label:
                moved += 1
                continue
            merged[label].append(box)
            present.add((key, label))
    added = {1: 0, 0: 0}
    for key, label in verdicts.items():
        if (key, label) in present:
            continue
        merged[label].append(Box(*key, label))
        present.add((key, label))
        added[label] += 1
    already = len(verdicts) - added[1] - added[0]

    out_dir.mkdir(parents=True, exist_ok=True)
    for label, path in paths.items():
        _write_atomically(path, merged[label])
    return ExportSummary(tp_path=paths[1], fp_path=paths[0], tp_added=added[1], fp_added=added[0], already_present=already,
                         moved=moved, skipped=skipped, tp_total=len(merged[1]), fp_total=len(merged[0]))


def _verdict_per_box(decided: list[dict]) -> tuple[dict[tuple, int], int]:
    """Box -> label (1 TP, 0 FP) from the latest decisions, and the number of boxes only ever skipped.

    Several candidates can share a box (two templates matching the same call); the most recent
    TP/FP decision among them wins, and a later "skip" does not undo a TP or FP.
    """
    verdicts: dict[tuple, int] = {}
    seen: set[tuple] = set()
    for row in decided:  # oldest decision first, so later ones overwrite
        key = (row["recording_id"], row["species_id"], row["songtype_id"], row["t_min"], row["f_min"], row["t_max"], row["f_max"])
        seen.add(key)
        if row["decision"] in _LABEL_OF_DECISION:
            verdicts[key] = _LABEL_OF_DECISION[row["decision"]]
    return verdicts, len(seen - verdicts.keys())


def _key(box: Box) -> tuple:
    return (box.recording_id, box.species_id, box.songtype_id, round(box.t_min_s, BOX_DECIMALS), round(box.f_min_hz, BOX_DECIMALS),
            round(box.t_max_s, BOX_DECIMALS), round(box.f_max_hz, BOX_DECIMALS))


def _write_atomically(path: Path, boxes: list[Box]) -> None:
    atomic_write_with(path, lambda tmp: write_boxes(tmp, boxes))
