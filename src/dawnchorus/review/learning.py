"""Active learning in the review page: a small head, retrained on the reviewed candidates'
embeddings every few decisions, re-ranks the candidates still undecided.

Per species, a logistic regression on the embeddings of the candidates marked TP and FP (it
fits in milliseconds). The reviewer chooses what comes next:

- ``likely``: the highest P(TP) first, to collect calls fast;
- ``uncertain``: P(TP) nearest 0.5 first, the decisions the head learns most from;
- ``random``: a fixed shuffle of all candidates, served in its order (its seed comes from the
  candidate list, so a reopened review continues it and another list draws its own). The shuffle's first
  candidates, up to the last one the random mode served, are a simple random sample of the
  candidates, whichever mode decided each of them; their share of TPs estimates the precision
  of the whole candidate list without bias (``random_sample``). Counting only the decisions
  made in random mode would not: after a "likely" stretch, what is left is poorer than the list;
- ``input``: the order the candidates were given in.

The held-out precision and recall shown per species come from cross-validation over the
decisions so far (at P(TP) = 0.5); they say how well the head separates this reviewer's TPs
from FPs, not how good the candidate list is (that is the random stream's precision).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

MODES = ("likely", "uncertain", "random", "input")
MIN_EACH = 2  # TPs and FPs a species needs before a head is fitted


@dataclass
class ActiveLearner:
    """The head of every species, and the order it puts the undecided candidates in."""

    vectors: dict[int, np.ndarray]  # candidate id -> embedding
    species_of: dict[int, int]  # candidate id -> species id
    every: int = 10
    mode: str = "likely"
    seed: int = 0
    probability: dict[int, float] = field(default_factory=dict)  # candidate id -> P(TP) of the latest heads
    held_out: dict[int, dict] = field(default_factory=dict)  # species id -> cross-validated precision / recall
    fits: int = 0
    since_fit: int = 0

    def __post_init__(self):
        if self.every < 1:
            raise InputError(f"--learn-every must be at least 1, not {self.every}")
        self.set_mode(self.mode)
        ids = sorted(set(self.vectors) | set(self.species_of))
        self._shuffle = {int(candidate_id): rank for rank, candidate_id in enumerate(np.random.default_rng(self.seed).permutation(ids))}
        self._shuffled_members: dict[int, list[int]] = {}  # species id -> its candidates in the shuffle's order
        for candidate_id in sorted(self.species_of, key=self._shuffle.__getitem__):
            self._shuffled_members.setdefault(self.species_of[candidate_id], []).append(candidate_id)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise InputError(f"learning mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode

    def observe(self, latest: dict[int, str]) -> bool:
        """Count one decision; refit when ``every`` have been made since the last fit. True when refitted."""
        self.since_fit += 1
        if self.since_fit < self.every:
            return False
        self.fit(latest)
        return True

    def fit(self, latest: dict[int, str]) -> None:
        """Refit every species' head on the decisions in ``latest`` (candidate id -> tp / fp / skip)."""
        self.since_fit, self.fits = 0, self.fits + 1
        for species_id in sorted(set(self.species_of.values())):
            members = [i for i, s in self.species_of.items() if s == species_id and i in self.vectors]
            labelled = [i for i in members if latest.get(i) in ("tp", "fp")]
            fitted = fit_head(np.stack([self.vectors[i] for i in labelled]) if labelled else np.zeros((0, 1)),
                              np.array([latest[i] == "tp" for i in labelled], dtype=int), seed=self.seed)
            if fitted is None:
                self.held_out.pop(species_id, None)
                continue
            head, self.held_out[species_id] = fitted
            scored = head.predict_proba(unit(np.stack([self.vectors[i] for i in members])))[:, 1]
            self.probability.update({i: float(p) for i, p in zip(members, scored)})

    def order(self, base: list[int], latest: dict[int, str]) -> list[int]:
        """``base`` with the decided candidates first (in their order) and the undecided as the mode wants."""
        decided = [i for i in base if i in latest]
        undecided = [i for i in base if i not in latest]
        position = {candidate_id: rank for rank, candidate_id in enumerate(base)}
        if self.mode == "likely":
            undecided.sort(key=lambda i: (-self.probability.get(i, -1.0), position[i]))
        elif self.mode == "uncertain":
            undecided.sort(key=lambda i: (abs(self.probability[i] - 0.5) if i in self.probability else 1.0, position[i]))
        elif self.mode == "random":
            undecided.sort(key=lambda i: self._shuffle.get(i, len(self._shuffle) + position[i]))
        return decided + undecided

    def random_sample(self, latest: dict[int, str], served: set[int]) -> dict[int, dict]:
        """Per species: the TPs and FPs of its simple random sample, its shuffled candidates up to the
        last one the random mode ``served``, and the precision of its candidates estimated from them
        (with a 90 % Wilson interval). Skipped candidates are left out of the sample."""
        from ..intervals import wilson

        result = {}
        for species_id, members in sorted(self._shuffled_members.items()):
            reached = [rank for rank, i in enumerate(members) if i in served]
            sample = [latest.get(i) for i in members[:reached[-1] + 1]] if reached else []
            tp, fp = sample.count("tp"), sample.count("fp")
            low = high = precision = None
            if tp + fp:
                precision = tp / (tp + fp)
                low, high = (float(bound[0]) for bound in wilson(np.array([tp]), np.array([tp + fp])))
            result[species_id] = {"random_tp": tp, "random_fp": fp, "random_precision": precision, "random_low": low,
                                  "random_high": high}
        return result


def fit_head(x: np.ndarray, y: np.ndarray, *, seed: int = 0):
    """A head on embeddings ``x`` with labels ``y`` (1 TP, 0 FP) and its cross-validated precision
    and recall, or None with fewer than ``MIN_EACH`` of either. Its ``predict_proba`` takes
    ``unit`` vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < MIN_EACH:
        return None
    x = unit(x)
    # scaled per dimension: embeddings' raw scales differ by model, the penalty should not
    head = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000))
    folds = min(5, positives, negatives)
    predicted = cross_val_predict(head, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    true_positive = int(((predicted == 1) & (y == 1)).sum())
    held_out = {"precision": true_positive / max(1, int(predicted.sum())), "recall": true_positive / max(1, positives),
                "decisions": len(y)}
    return head.fit(x, y), held_out


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1: the cosine geometry the index searches in."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
