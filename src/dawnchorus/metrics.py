"""Scores for species-presence predictions, and the checked reading of score tables.

The competition ranks submissions by LWLRAP, so that is the number to optimise; the
per-species AP, mAP, pooled ("total") AP and fixed-threshold counts follow the host
paper (LeBien et al. 2020) so results can be compared with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .data.tables import read_text_table
from .errors import InputError, ValidationError

__all__ = [
    "EvaluationReport", "average_precision_per_species", "evaluate", "lwlrap",
    "mean_average_precision", "per_species_lwlrap", "read_score_table", "threshold_stats",
    "total_average_precision",
]

ID_COLUMN = "recording_id"
_SPECIES_RE = re.compile(r"^s\d+$")
_MAX_SHOWN = 10
_KINDS = ("submission", "truth")


def _check_arrays(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate once at the boundary so the maths below can assume clean 0/1 and finite input."""
    t, s = np.asarray(y_true), np.asarray(y_score)
    if t.ndim != 2 or s.ndim != 2:
        raise InputError(f"y_true and y_score must be 2-D (recordings x species); got {t.ndim}-D and {s.ndim}-D")
    if t.shape != s.shape:
        raise InputError(f"y_true shape {t.shape} does not match y_score shape {s.shape}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"y_true/y_score are empty (shape {t.shape}); need at least one recording and species")
    for name, a in (("y_true", t), ("y_score", s)):
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
            raise InputError(f"{name} must be a real numeric array; got dtype {a.dtype}")
    t, s = t.astype(np.float64), s.astype(np.float64)
    for name, bad, rule in (("y_score", ~np.isfinite(s), "non-finite values (NaN/inf)"),
                            ("y_true", ~np.isin(t, (0.0, 1.0)), "values other than 0 and 1")):
        if bad.any():
            where = [tuple(int(i) for i in b) for b in np.argwhere(bad)]
            raise InputError(f"{name} has {rule} at (row, column): {_fmt_ids(where)}")
    return t, s


def _label_precisions(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Precision at each positive label's rank (0 for negatives), one sort per row, no row loop.

    A label's rank counts every label scoring >= it (ties share the worst rank), exactly like
    scikit-learn's LRAP, so our number matches the one the leaderboard used.
    """
    n, c = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, axis=1)
    ts = np.take_along_axis(t, order, axis=1)
    is_end = np.ones((n, c), dtype=bool)
    is_end[:, :-1] = ss[:, :-1] != ss[:, 1:]
    end_idx = np.where(is_end, np.arange(c), c)
    block_end = np.minimum.accumulate(end_idx[:, ::-1], axis=1)[:, ::-1]
    hits = np.take_along_axis(np.cumsum(ts, axis=1), block_end, axis=1)
    prec_sorted = ts * hits / (block_end + 1)
    out = np.empty_like(prec_sorted)
    np.put_along_axis(out, order, prec_sorted, axis=1)
    return out


def lwlrap(*, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Label-weighted label-ranking average precision, the RFCx competition metric.

    Every positive label counts once, so recordings with more species weigh more and
    recordings without any positive are ignored. Raises InputError if nothing is positive,
    because then the score is undefined and a number would hide a broken truth table.
    """
    t, s = _check_arrays(y_true, y_score)
    total = t.sum()
    if total == 0:
        raise InputError("y_true has no positive labels; lwlrap is undefined")
    return float(_label_precisions(t, s).sum() / total)


def per_species_lwlrap(*, y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Each species' share of lwlrap divided by its positives (NaN for species without any).

    Weighting these by positives / total positives gives back lwlrap exactly, which shows
    which species pull the competition score down.
    """
    t, s = _check_arrays(y_true, y_score)
    pos = t.sum(axis=0)
    sums = _label_precisions(t, s).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pos > 0, sums / np.where(pos > 0, pos, 1), np.nan)


def average_precision_per_species(*, y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AP of each species over recordings; NaN where a species never occurs, since AP needs positives."""
    t, s = _check_arrays(y_true, y_score)
    out = np.full(t.shape[1], np.nan)
    for j in np.flatnonzero(t.sum(axis=0) > 0):
        out[j] = average_precision_score(t[:, j], s[:, j])
    return out


def mean_average_precision(*, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean AP over species that occur (the paper's mAP); absent species would only add noise."""
    ap = average_precision_per_species(y_true=y_true, y_score=y_score)
    if np.isnan(ap).all():
        raise InputError("y_true has no positive labels; mean average precision is undefined")
    return float(np.nanmean(ap))


def total_average_precision(*, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AP over all (recording, species) predictions pooled, the paper's AP_total.

    Common species dominate it, so compare it with mAP to see how rare species fare.
    """
    t, s = _check_arrays(y_true, y_score)
    if t.sum() == 0:
        raise InputError("y_true has no positive labels; total average precision is undefined")
    return float(average_precision_score(t.ravel(), s.ravel()))


def masked_auc(*, y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, float]:
    """ROC AUC over known entries only (``y_true`` NaN = unknown): pooled, and the mean over
    classes that have both a known 1 and a known 0. This is the validation signal on real
    data, where only the TP/FP boxes are known. NaN when it is undefined."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    known = ~np.isnan(y_true)
    pooled = float("nan")
    if known.any() and len(np.unique(y_true[known])) == 2:
        pooled = float(roc_auc_score(y_true[known], y_score[known]))
    per_class = []
    for column in range(y_true.shape[1]):
        mask = known[:, column]
        if mask.any() and len(np.unique(y_true[mask, column])) == 2:
            per_class.append(roc_auc_score(y_true[mask, column], y_score[mask, column]))
    return pooled, float(np.mean(per_class)) if per_class else float("nan")


def youden_threshold(*, y_true: np.ndarray, y_score: np.ndarray, bootstrap: int = 0, seed: int = 0) -> float:
    """The score threshold that maximises Youden's J (true-positive rate minus false-positive
    rate) over all entries: the operating point where a detector's misses and false alarms
    balance, which is where classify-and-count prevalence estimates are least biased.

    With ``bootstrap`` > 0, the median of the thresholds chosen on that many resamples of the
    rows (recordings), a bagged estimate: on a few dozen held-out recordings the maximum of J
    jumps between gaps of the score distribution (benchmarks/RESULTS.md, issue 4).
    """
    t, s = _check_arrays(y_true, y_score)
    if t.sum() == 0 or t.sum() == t.size:
        raise InputError("y_true needs both present and absent entries to choose a threshold")

    def best(rows: np.ndarray) -> float:
        fpr, tpr, thresholds = roc_curve(t[rows].ravel(), s[rows].ravel())
        return float(min(1.0, thresholds[int(np.argmax(tpr - fpr))]))

    if bootstrap <= 0:
        return best(np.arange(len(t)))
    rng = np.random.default_rng(seed)
    resamples = (rng.integers(0, len(t), len(t)) for _ in range(bootstrap))
    chosen = [best(rows) for rows in resamples if 0 < t[rows].sum() < t[rows].size]
    return float(np.median(chosen)) if chosen else best(np.arange(len(t)))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def threshold_stats(*, y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5,
                    species: list[str] | None = None) -> pd.DataFrame:
    """Per-species counts and rates at one threshold (score >= threshold means present), as in
    the paper's Table 2, so a deployment threshold can be judged species by species.

    Adds a ``total`` row (ratios of pooled counts) and a ``mean`` row (plain mean over
    species; ratios averaged over species where defined). Undefined ratios are NaN.
    """
    t, s = _check_arrays(y_true, y_score)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"threshold must be a number; got {threshold!r}") from None
    if not math.isfinite(threshold):
        raise InputError(f"threshold must be finite; got {threshold!r}")
    names = list(species) if species is not None else [f"s{j}" for j in range(t.shape[1])]
    if len(names) != t.shape[1]:
        raise InputError(f"{len(names)} species names given for {t.shape[1]} columns")
    pred = s >= threshold
    pos = t.astype(bool)
    counts = {
        "positives": pos.sum(0), "negatives": (~pos).sum(0),
        "tp": (pred & pos).sum(0), "fp": (pred & ~pos).sum(0),
        "tn": (~pred & ~pos).sum(0), "fn": (~pred & pos).sum(0),
    }
    df = pd.DataFrame({k: v.astype(np.float64) for k, v in counts.items()}, index=names)

    def add_ratios(d: pd.DataFrame) -> pd.DataFrame:
        d["precision"] = _ratio(d["tp"].to_numpy(), (d["tp"] + d["fp"]).to_numpy())
        d["recall"] = _ratio(d["tp"].to_numpy(), d["positives"].to_numpy())
        d["fpr"] = _ratio(d["fp"].to_numpy(), d["negatives"].to_numpy())
        return d

    df = add_ratios(df)
    total = add_ratios(df[list(counts)].sum().to_frame("total").T)
    mean = df.mean().to_frame("mean").T  # NaN-skipping, so undefined ratios do not poison the mean
    return pd.concat([df, total, mean]).rename_axis("species")


def _fmt_ids(values: list) -> str:
    """At most _MAX_SHOWN offenders: a message listing 20,000 bad rows helps nobody."""
    more = len(values) - _MAX_SHOWN
    return ", ".join(str(v) for v in values[:_MAX_SHOWN]) + (f" ... and {more} more" if more > 0 else "")


def _resolve_species(p: Path, header: list[str], expected: list[str] | None) -> list[str]:
    """Check the header before parsing cells: a wrong header makes every cell error meaningless
    (duplicated columns were already refused by ``read_text_table``)."""
    if ID_COLUMN not in header:
        raise ValidationError(str(p), [f"no '{ID_COLUMN}' column; header is {_fmt_ids(header)}"])
    found = [h for h in header if h != ID_COLUMN]
    species = [h for h in found if _SPECIES_RE.match(h)] if expected is None else list(expected)
    missing = [c for c in species if c not in found]
    extra = [repr(h) for h in found if h not in species]
    problems = [f"missing species columns: {_fmt_ids(missing)}"] if missing else []
    if extra:
        hint = " (species columns must be named s<k>)" if expected is None else ""
        problems.append(f"unexpected columns{hint}: {_fmt_ids(extra)}")
    if not species:
        problems.append("no species columns (s0, s1, ...)")
    if problems:
        raise ValidationError(str(p), problems)
    return species


def read_score_table(*, path: str | Path, species_columns: list[str] | None = None,
                     kind: str = "submission") -> pd.DataFrame:
    """Read a ``recording_id,s0..`` CSV (submission or truth) and reject anything that would
    silently skew a score; every problem is reported at once, with file line numbers.

    Returns recording_id (str) plus species columns (float scores, or int 0/1 for truth),
    in ``species_columns`` order when given, else file order.
    """
    if kind not in _KINDS:
        raise InputError(f"kind must be one of {_KINDS}; got {kind!r}")
    p = Path(path)
    raw = read_text_table(p, what=f"{kind} table", header=f"{ID_COLUMN},s0,s1,...")
    species = _resolve_species(p, list(raw.columns), species_columns)
    problems: list[str] = []
    if raw.empty:
        raise InputError(f"{p}: file has a header but no data rows")
    ids = raw[ID_COLUMN]
    if (ids == "").any():
        problems.append(f"empty {ID_COLUMN} on line(s) {_fmt_ids(list(ids.index[ids == '']))}")
    dup_ids = sorted(set(ids[ids.duplicated(keep=False) & (ids != "")]))
    if dup_ids:
        problems.append(f"duplicate recording ids: {_fmt_ids(dup_ids)}")
    values = {}
    for col in species:
        text = raw[col]
        num = pd.to_numeric(text, errors="coerce")
        empty = (text == "") | (text.str.lower().isin(["nan", "na", "n/a", "null", "none"]))
        nonnum = num.isna() & ~empty
        if empty.any():
            problems.append(f"column {col}: empty or NaN cells on line(s) {_fmt_ids(list(text.index[empty]))}")
        if nonnum.any():
            shown = [f"{i} ({text[i]!r})" for i in text.index[nonnum]]
            problems.append(f"column {col}: non-numeric values on line(s) {_fmt_ids(shown)}")
        if kind == "submission":
            out, rule = num.notna() & ~num.between(0.0, 1.0), "scores outside [0, 1]"
        else:
            out, rule = num.notna() & ~num.isin([0.0, 1.0]), "truth values other than 0 or 1"
        if out.any():
            shown = [f"{i} ({text[i]})" for i in text.index[out]]
            problems.append(f"column {col}: {rule} on line(s) {_fmt_ids(shown)}")
        values[col] = num
    if problems:
        raise ValidationError(str(p), problems)
    table = pd.DataFrame({ID_COLUMN: ids.astype(str), **values}).reset_index(drop=True)
    if kind == "truth":
        table[species] = table[species].astype(np.int64)
    return table


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """Everything `evaluate` found, kept together so the CLI can print it or save it as JSON."""

    lwlrap: float
    map: float
    total_ap: float
    n_recordings: int
    species: list[str]
    per_species: pd.DataFrame
    threshold: float
    threshold_stats: pd.DataFrame

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; NaN becomes None because JSON has no NaN."""
        def clean(v):
            v = float(v)
            return None if math.isnan(v) else v

        ps = self.per_species.set_index("species")
        return {
            "lwlrap": clean(self.lwlrap), "map": clean(self.map), "total_ap": clean(self.total_ap),
            "n_recordings": int(self.n_recordings), "species": list(self.species),
            "threshold": float(self.threshold),
            "per_species": {k: clean(v) for k, v in ps["ap"].items()},
            "per_species_lwlrap": {k: clean(v) for k, v in ps["lwlrap"].items()},
            "threshold_stats": {str(r): {c: clean(v) for c, v in row.items()}
                                for r, row in self.threshold_stats.iterrows()},
        }

    def format_table(self) -> str:
        """Fixed-width text table, readable in a terminal or a log file."""
        def f(v, digits: int = 3) -> str:
            return "-" if v is None or math.isnan(float(v)) else f"{float(v):.{digits}f}"

        ap = dict(zip(self.per_species["species"], self.per_species["ap"]))
        lw = dict(zip(self.per_species["species"], self.per_species["lwlrap"]))
        ap["total"], lw["total"], ap["mean"] = self.total_ap, self.lwlrap, self.map
        cols = ("species", "pos", "AP", "lwlrap", "TP", "FP", "TN", "FN", "prec", "recall", "FPR")
        widths = (12, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7)
        head = "".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))
        lines = [
            f"recordings: {self.n_recordings}   species: {len(self.species)}",
            f"lwlrap: {f(self.lwlrap, 4)}   mAP: {f(self.map, 4)}   total AP: {f(self.total_ap, 4)}",
            f"threshold: {self.threshold:g} (score >= threshold counts as present)",
            "", head, "-" * len(head),
        ]
        for name, row in self.threshold_stats.iterrows():
            if name == "total":
                lines.append("-" * len(head))
            nd = 1 if name == "mean" else 0
            cells = [str(name), f(row["positives"], nd), f(ap.get(name, np.nan)), f(lw.get(name, np.nan))]
            cells += [f(row[k], nd) for k in ("tp", "fp", "tn", "fn")]
            cells += [f(row[k]) for k in ("precision", "recall", "fpr")]
            lines.append("".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))))
        return "\n".join(lines)


def evaluate(*, truth_path: str | Path, pred_path: str | Path, threshold: float = 0.5) -> EvaluationReport:
    """Score a Kaggle-format submission against a truth table, matching rows by recording_id.

    Species columns come from the truth file. Missing or extra recordings are errors rather
    than being skipped, because a partial submission would otherwise get a flattering score.
    """
    truth = read_score_table(path=truth_path, kind="truth")
    species = [c for c in truth.columns if c != ID_COLUMN]
    pred = read_score_table(path=pred_path, species_columns=species, kind="submission")
    t_ids, p_ids = set(truth[ID_COLUMN]), set(pred[ID_COLUMN])
    missing = [i for i in truth[ID_COLUMN] if i not in p_ids]
    extra = [i for i in pred[ID_COLUMN] if i not in t_ids]
    problems = []
    if missing:
        problems.append(f"{len(missing)} recording ids in truth {truth_path} are missing: {_fmt_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} recording ids not in truth {truth_path}: {_fmt_ids(extra)}")
    if problems:
        raise ValidationError(str(pred_path), problems)
    pred = pred.set_index(ID_COLUMN).loc[truth[ID_COLUMN], species]
    y_true = truth[species].to_numpy()
    y_score = pred.to_numpy(dtype=np.float64)
    if y_true.sum() == 0:
        raise InputError(f"{truth_path}: no species is marked present in any recording; scores are undefined")
    ap = average_precision_per_species(y_true=y_true, y_score=y_score)
    stats = threshold_stats(y_true=y_true, y_score=y_score, threshold=threshold, species=species)
    per_species = stats.loc[species, ["precision", "recall", "fpr"]].rename_axis("species").reset_index()
    per_species.insert(1, "positives", y_true.sum(axis=0).astype(np.int64))
    per_species.insert(2, "ap", ap)
    per_species.insert(3, "lwlrap", per_species_lwlrap(y_true=y_true, y_score=y_score))
    return EvaluationReport(
        lwlrap=lwlrap(y_true=y_true, y_score=y_score),
        map=float(np.nanmean(ap)),
        total_ap=total_average_precision(y_true=y_true, y_score=y_score),
        n_recordings=len(truth), species=species, per_species=per_species,
        threshold=float(threshold), threshold_stats=stats,
    )
