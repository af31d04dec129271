"""One review session: the candidates being reviewed, where their audio is, and the database.

Recording ids are resolved once, at start-up, from the audio directory; afterwards a
request can only name a candidate by its database id, so no client-supplied text ever
becomes a file path.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data.audio import AudioInfo, find_recordings_by_id, probe_audio
from ..data.species import SpeciesTable
from ..errors import DawnchorusError, InputError
from . import db
from .candidates import Candidate
from .learning import ActiveLearner
from .media import BoxView

MAX_REVIEWER_LENGTH = 100


@dataclass
class ReviewSession:
    db_path: Path
    cache_dir: Path
    default_reviewer: str
    order: list[int]  # candidate ids in the order they were given
    rows: dict[int, dict]  # candidate id -> public fields (box, score, template, source)
    recordings: dict[str, AudioInfo] = field(repr=False)
    learner: ActiveLearner | None = None  # active learning (``review.learning``); None: the input order
    # the server answers on several threads; the learner's state changes with every decision
    learning_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def candidate(self, candidate_id: int) -> dict:
        """The candidate's fields; KeyError for an id not in this session."""
        return self.rows[candidate_id]

    def box_view(self, candidate_id: int) -> BoxView:
        row = self.rows[candidate_id]
        return BoxView(self.recordings[row["recording_id"]], row["t_min"], row["t_max"], row["f_min"], row["f_max"])

    def listing(self) -> list[dict]:
        """Every candidate with its latest decision (or None): in input order, or as the learner ranks them."""
        with db.open_db(self.db_path) as connection:
            latest = db.latest_decisions(connection)
        with self.learning_lock:
            order = self.order
            if self.learner is not None:
                order = self.learner.order(self.order, {i: d.decision for i, d in latest.items()})
            return [self._with_decision(candidate_id, latest.get(candidate_id)) for candidate_id in order]

    def decide(self, candidate_id: int, decision: str, reviewer: str | None) -> dict:
        self.rows[candidate_id]  # KeyError before anything is written
        name = clean_reviewer(reviewer) or self.default_reviewer
        mode = self.learner.mode if self.learner is not None else None
        with db.open_db(self.db_path) as connection:
            recorded = db.record_decision(connection, candidate_id=candidate_id, decision=decision, reviewer=name, mode=mode)
            latest = {i: d.decision for i, d in db.latest_decisions(connection).items()} if mode else {}
        with self.learning_lock:
            reordered = self.learner.observe(latest) if self.learner is not None else False
            return {**self._with_decision(candidate_id, recorded), "reordered": reordered}

    def set_mode(self, mode: str) -> dict:
        if self.learner is None:
            raise InputError("this review has no active learning; start it with --index INDEX")
        with self.learning_lock:
            self.learner.set_mode(mode)
        return self.learning()

    def learning(self) -> dict:
        """Per species: decisions so far, the head's held-out precision and recall, and the precision
        of the candidates estimated from the random stream's sample (``ActiveLearner.random_sample``)."""
        with db.open_db(self.db_path) as connection:
            latest = {i: d.decision for i, d in db.latest_decisions(connection).items()}
            served = db.decided_in_mode(connection, "random")
        species = {}
        for candidate_id, row in self.rows.items():
            entry = species.setdefault(row["species_id"], {"species_id": row["species_id"], "species": row.get("species", ""),
                                                           "candidates": 0, "tp": 0, "fp": 0, "skip": 0})
            entry["candidates"] += 1
            if candidate_id in latest:
                entry[latest[candidate_id]] += 1
        learner = self.learner
        with self.learning_lock:
            sampled = learner.random_sample(latest, served) if learner is not None else {}
        empty = {"random_tp": 0, "random_fp": 0, "random_precision": None, "random_low": None, "random_high": None}
        for species_id, entry in species.items():
            held = learner.held_out.get(species_id, {}) if learner is not None else {}
            entry["held_out_precision"], entry["held_out_recall"] = held.get("precision"), held.get("recall")
            entry.update(sampled.get(species_id, empty))
        state = {"active": learner is not None, "species": [species[k] for k in sorted(species)]}
        if learner is not None:
            state.update(mode=learner.mode, every=learner.every, fits=learner.fits, until_fit=learner.every - learner.since_fit)
        return state

    def history(self, candidate_id: int) -> list[dict]:
        self.rows[candidate_id]
        with db.open_db(self.db_path) as connection:
            return [d.as_dict() for d in db.decision_history(connection, candidate_id)]

    def _with_decision(self, candidate_id: int, decision: db.Decision | None) -> dict:
        empty = {"decision": None, "reviewer": None, "decided_at": None}
        learnt = {"p_tp": self.learner.probability.get(candidate_id)} if self.learner is not None else {}
        return {**self.rows[candidate_id], **(decision.as_dict() if decision else empty), **learnt}


def clean_reviewer(name: str | None) -> str:
    """Reviewer names are free text, but single-line and short, so the history stays readable."""
    text = " ".join(str(name or "").split())
    if len(text) > MAX_REVIEWER_LENGTH:
        raise InputError(f"reviewer name is longer than {MAX_REVIEWER_LENGTH} characters")
    return text


def open_session(*, candidates: Sequence[Candidate], audio_dir: str | Path, db_path: str | Path,
                 reviewer: str = "anonymous", cache_dir: str | Path | None = None, index_dir: str | Path | None = None,
                 learn_every: int = 10, mode: str = "likely", species: SpeciesTable | None = None) -> ReviewSession:
    """Resolve the candidates' recordings under ``audio_dir`` and store the candidates in the database.

    Candidates whose recording is missing (or starts after its end) are left out with a warning;
    none left is an error.
    """
    audio_root = Path(audio_dir)
    db_path = Path(db_path)
    default_reviewer = clean_reviewer(reviewer) or "anonymous"
    if not candidates:
        raise InputError("no candidates to review: the candidates file has no rows (or none above --min-score)")
    files = find_recordings_by_id(audio_root)
    root = audio_root.resolve()
    recordings: dict[str, AudioInfo] = {}
    unusable: dict[str, str] = {}
    for recording_id in dict.fromkeys(c.recording_id for c in candidates):
        path = files.get(recording_id)
        if path is None:
            unusable[recording_id] = "no audio file"
        elif not path.resolve().is_relative_to(root):  # a symlink leading out of the audio directory
            unusable[recording_id] = f"{path} points outside {audio_root}"
        else:
            try:
                recordings[recording_id] = probe_audio(path)
            except DawnchorusError as exc:
                unusable[recording_id] = str(exc)
    kept = [c for c in candidates if c.recording_id in recordings and c.t_min_s < recordings[c.recording_id].duration_s]
    _warn_dropped(candidates, kept, unusable, audio_root)
    if not kept:
        raise InputError(f"none of the {len(candidates)} candidates has a recording under {audio_root}; "
                         "pass the directory holding their audio files with --audio")
    rows = [_stored_row(c, recordings[c.recording_id]) for c in kept]
    with db.open_db(db_path) as connection:
        ids = db.store_candidates(connection, rows)
    public = {}
    for candidate_id, row in zip(ids, rows):
        public.setdefault(candidate_id, {"id": candidate_id, **{k: v for k, v in row.items() if k != "score"},
                                         "score": _json_number(row["score"])})
    order = list(dict.fromkeys(ids))  # the same box twice in the input is reviewed once
    for rank, candidate_id in enumerate(order):
        public[candidate_id]["input_rank"] = rank  # the page's "input order", whatever order the list comes in
    cache = Path(cache_dir) if cache_dir is not None else db_path.with_name(db_path.stem + "_cache")
    if species is not None:  # names wherever species appear
        names = dict(zip(species.species_ids, species.names))
        for row in public.values():
            row["species"] = names.get(row["species_id"], "")
    session = ReviewSession(db_path=db_path, cache_dir=cache, default_reviewer=default_reviewer, order=order,
                            rows=public, recordings=recordings)
    if index_dir is not None:
        session.learner = _learner(session, index_dir=index_dir, every=learn_every, mode=mode)
    return session


def _learner(session: ReviewSession, *, index_dir, every: int, mode: str) -> ActiveLearner:
    from ..search.index import box_vectors, open_index

    index = open_index(index_dir)
    ids = session.order
    boxes = [(session.rows[i]["recording_id"], session.rows[i]["t_min"], session.rows[i]["t_max"]) for i in ids]
    vectors = box_vectors(index, boxes, audio_paths={r: info.path for r, info in session.recordings.items()})
    # the shuffle's seed comes from the list: a reopened review continues its shuffle, another list draws its own sample
    listed = "\n".join(f"{session.rows[i]['recording_id']}|{session.rows[i]['species_id']}|{box[1]}|{box[2]}"
                       for i, box in zip(ids, boxes))
    learner = ActiveLearner(vectors=dict(zip(ids, vectors)), species_of={i: session.rows[i]["species_id"] for i in ids},
                            every=every, mode=mode, seed=int(hashlib.sha1(listed.encode()).hexdigest()[:8], 16))
    with db.open_db(session.db_path) as connection:  # a reopened review continues from its decisions so far
        latest = {i: d.decision for i, d in db.latest_decisions(connection).items()}
    if latest:
        learner.fit(latest)
    return learner


def _stored_row(candidate: Candidate, audio: AudioInfo) -> dict:
    f_max = audio.nyquist_hz if candidate.f_max_hz is None else candidate.f_max_hz
    key = db.box_key(candidate.recording_id, candidate.species_id, candidate.songtype_id, candidate.t_min_s,
                     candidate.f_min_hz, candidate.t_max_s, f_max, candidate.template_id)
    return {**dict(zip(db.KEY_COLUMNS, key)), "score": candidate.score, "source": candidate.source}


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _warn_dropped(candidates, kept, unusable: dict[str, str], audio_root: Path) -> None:
    dropped = len(candidates) - len(kept)
    if not dropped:
        return
    reasons = [f"recording {recording_id}: {reason}" for recording_id, reason in list(unusable.items())[:10]]
    more = f" (and {len(unusable) - 10} more recordings)" if len(unusable) > 10 else ""
    late = dropped - sum(c.recording_id in unusable for c in candidates)
    if late:
        reasons.append(f"{late} candidate(s) start after the end of their recording")
    warnings.warn(f"{dropped} of {len(candidates)} candidates left out (audio directory {audio_root}): "
                  + "; ".join(reasons) + more, stacklevel=2)
