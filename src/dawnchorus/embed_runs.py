"""Runs of heads on pretrained embeddings: k-fold training, pseudo-label rounds, prediction.

Folds are grouped by recording (``train.assign_folds``, as for the CNN); held-out recordings
get out-of-fold scores (``oof.csv``, the reference prior for post-processing). A pseudo-label
round scores every window of the training recordings with the previous round's fold heads
(each recording by the head that did not see it) and, when asked, every window of more audio
(the fold heads averaged); a student then trains on the box labels plus those targets, box
labels overriding. Round 0 is the run directory; round K is ``pseudo/roundK`` (``runs``), each
with its heads, ``pseudo_labels.parquet``, ``history.csv`` and ``oof.csv``; finished rounds
are kept, so an interrupted run resumes. A recording's score aggregates its windows (max or
the mean of the top k).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from .atomic import atomic_write_bytes, atomic_write_with
from .config import HEAD_KIND, HeadConfig, head_config_from_dict, load_any_config, save_head_config
from .data.audio import find_audio_files
from .data.bands import species_bands, write_bands_csv
from .data.species import SpeciesTable, read_species_csv, write_species_csv
from .embed_heads import fit_head, head_probabilities, pseudo_targets, score_windows, window_labels, with_pseudo_labels
from .embeddings import Embedder, EmbeddingCache, RecordingEmbeddings, embed_recordings, resolve_embedder
from .errors import InputError
from .runs import file_digest, resolve_round
from .scores import aggregate_windows

HEAD_FILE = "head.safetensors"
OOF_WINDOWS_FILE = "oof_windows.parquet"


def _config_with(config: HeadConfig | None, options: dict) -> HeadConfig:
    known = {f.name for f in dataclasses.fields(HeadConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown head option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    raw = {**dataclasses.asdict(config or HeadConfig()), **options}
    return head_config_from_dict(raw, source="embedding-head options")


@dataclass
class _Corpus:
    """The training recordings' embeddings, their box labels and folds."""

    species: SpeciesTable
    embeddings: dict[str, RecordingEmbeddings]  # every recording a round may score (train, then extra audio)
    vectors: np.ndarray  # box-labelled windows ...
    targets: np.ndarray  # ... their {1, 0, NaN} targets ...
    window_recordings: np.ndarray  # ... their recordings ...
    window_rows: np.ndarray  # ... and window indexes within them
    folds: dict[str, int]  # labelled recording -> fold (-1: in every fold's training set)
    n_folds: int


def train_embedding_head(*, data_dir: str | Path, out_dir: str | Path, cache_dir: str | Path, config: HeadConfig | None = None,
                         threads: int = 1, embedder: Embedder | None = None, resume: bool = False, progress: bool = False,
                         **options) -> Path:
    """Train fold heads on the embeddings of the labelled training recordings, then any pseudo-label rounds.

    ``options`` override fields of ``config`` (``head``, ``c``, ``folds``, ``pseudo_rounds`` ...).
    With ``resume``, a run in ``out_dir`` keeps its finished rounds and trains the missing ones.
    """
    from .data import load_dataset
    from .train import assign_folds

    out_dir = Path(out_dir)
    config = _config_with(config, options)
    if (out_dir / "config.yaml").is_file():
        if not resume:
            raise InputError(f"{out_dir}: already holds a run; choose another --out or pass --resume "
                             "(heads retrain in seconds from the cache)")
        saved = load_any_config(out_dir / "config.yaml")
        if not isinstance(saved, HeadConfig):
            raise InputError(f"{out_dir}: holds a CNN run, not an embedding-head run; choose another --out")
        kept = dataclasses.replace(saved, pseudo_rounds=config.pseudo_rounds,
                                   pseudo_audio_dir=config.pseudo_audio_dir or saved.pseudo_audio_dir)
        if dataclasses.replace(config, model=saved.model, window_s=saved.window_s) != kept:
            warnings.warn(f"{out_dir}: resuming with the run's saved config.yaml; of the settings given now only "
                          "pseudo_rounds and pseudo_audio_dir apply", stacklevel=2)
        config = kept
    dataset = load_dataset(data_dir, require_labels=True)
    labelled = sorted({b.recording_id for b in dataset.boxes})
    if config.folds > len(labelled):
        raise InputError(f"{len(labelled)} labelled recordings cannot be split into {config.folds} folds; lower folds")
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or _training_embedder(config, dataset, out_dir=out_dir, threads=threads)
    config = dataclasses.replace(config, model=embedder.name, window_s=embedder.window_s)
    cache = EmbeddingCache(cache_dir, embedder=embedder, hop_s=config.hop_s)
    wanted = sorted(dataset.train) if config.pseudo_rounds else labelled  # unlabelled recordings only serve pseudo labels
    embeddings = embed_recordings({r: dataset.train[r].path for r in wanted}, cache=cache, progress=progress, desc="embed train")
    if config.pseudo_rounds and config.pseudo_audio_dir:
        extra = find_audio_files(config.pseudo_audio_dir)
        if not extra:
            raise InputError(f"{config.pseudo_audio_dir}: no audio recordings (FLAC, WAV, MP3, OGG) found to pseudo-label")
        clash = sorted(set(extra) & set(embeddings))
        if clash:
            raise InputError(f"{config.pseudo_audio_dir}: recording id(s) {', '.join(clash[:5])} also in the training "
                             "split; pseudo-label audio must be other recordings")
        embeddings.update(embed_recordings(extra, cache=cache, progress=progress, desc="embed pseudo-label audio"))
    labelled_embeddings = {r: embeddings[r] for r in labelled}
    vectors, targets, window_recordings, window_rows = window_labels(
        boxes=dataset.boxes, embeddings=labelled_embeddings, species=dataset.species, window_s=config.window_s,
        min_inside=config.min_box_inside, with_rows=True)
    corpus = _Corpus(dataset.species, embeddings, vectors, targets, window_recordings, window_rows,
                     assign_folds(dataset, folds=config.folds, seed=config.seed), config.folds)
    save_head_config(config, out_dir / "config.yaml")
    write_species_csv(dataset.species, out_dir / "species.csv")
    write_bands_csv(species_bands(dataset.tp), out_dir / "species_bands.csv")  # where detections are drawn in Raven
    pd.DataFrame(sorted(corpus.folds.items()), columns=["recording_id", "fold"]).to_csv(out_dir / "folds.csv", index=False)
    if not _finished(out_dir, config):
        _fit_round(out_dir, corpus, config=config, threads=threads)
    _write_calibration(out_dir, dataset, config=config)
    for k in range(1, config.pseudo_rounds + 1):
        round_dir = out_dir / "pseudo" / f"round{k}"
        if _finished(round_dir, config):
            continue
        previous = out_dir if k == 1 else out_dir / "pseudo" / f"round{k - 1}"
        teacher = [load_file(str(previous / f"fold{f}" / HEAD_FILE)) for f in range(config.folds)]
        labels = teacher_window_scores(corpus, heads=teacher)
        round_dir.mkdir(parents=True, exist_ok=True)
        labels.to_parquet(round_dir / "pseudo_labels.parquet", index=False)
        _fit_round(round_dir, corpus, config=config, threads=threads, pseudo=labels)
    return out_dir


def _training_embedder(config: HeadConfig, dataset, *, out_dir: Path, threads: int) -> Embedder:
    """BirdNET, or a template bank cut from the training boxes (kept in the run, reused on resume)."""
    if config.embedder != "templates":
        return resolve_embedder(None, threads=threads)
    from .template_bank import BANK_FILE, bank_embedder, build_bank, save_bank
    from .templates import Template

    bank_path = out_dir / BANK_FILE
    if not bank_path.is_file():
        boxes = [("train_tp", b) for b in dataset.tp]
        if config.template_boxes == "tp+fp":
            boxes += [("train_fp", b) for b in dataset.fp]
        templates = [Template(recording_id=b.recording_id, species_id=b.species_id, songtype_id=b.songtype_id, t_min_s=b.t_min_s,
                              t_max_s=b.t_max_s, f_min_hz=b.f_min_hz, f_max_hz=b.f_max_hz, template_id=f"{kind}{i}",
                              source=f"{kind}.csv box {i + 1}") for i, (kind, b) in enumerate(boxes)]
        bank = build_bank(templates, audio_dir=dataset.root / "train", sample_rate_hz=config.template_sample_rate_hz,
                          window_s=config.template_window_s, frame_pool=config.template_frame_pool)
        save_bank(bank, bank_path)
    return run_embedder(out_dir, config, threads=threads)


def run_embedder(run_dir: str | Path, config: HeadConfig, *, threads: int = 1) -> Embedder:
    """The embedder a head run was trained on: its own template bank, or BirdNET (the optional extra)."""
    if config.embedder == "templates":
        from .template_bank import BANK_FILE, bank_embedder, load_bank

        return bank_embedder(load_bank(Path(run_dir) / BANK_FILE), window_s=config.template_window_s, threads=threads)
    return resolve_embedder(None, threads=threads)


def _write_calibration(run_dir: Path, dataset, *, config: HeadConfig) -> None:
    """Round 0's thresholds for estimating test prevalence, from its out-of-fold windows (as ``train``)."""
    from .calibration import write_calibration

    window_files = sorted(run_dir.glob(f"fold*/{OOF_WINDOWS_FILE}"))
    finished = (run_dir / "calibration.json").is_file()
    if config.persistence_windows is None or finished or not (run_dir / "oof.csv").is_file() or not window_files:
        return
    write_calibration(run_dir, oof=pd.read_csv(run_dir / "oof.csv"), dataset=dataset,
                      oof_windows=pd.concat([pd.read_parquet(p) for p in window_files], ignore_index=True),
                      persistence_windows=config.persistence_windows)


def _finished(round_dir: Path, config: HeadConfig) -> bool:
    return (round_dir / "history.csv").is_file() and all((round_dir / f"fold{f}" / HEAD_FILE).is_file() for f in range(config.folds))


def teacher_window_scores(corpus: _Corpus, *, heads: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Every window's teacher scores: a training recording by its own fold's head, others by all heads."""
    tables = []
    for recording_id, found in corpus.embeddings.items():
        fold = corpus.folds.get(recording_id, -1)
        chosen = [heads[fold]] if fold >= 0 else heads
        tables.append(score_windows({recording_id: found}, heads=chosen, species=corpus.species))
    return pd.concat(tables, ignore_index=True)


def _pseudo_rows(corpus: _Corpus, labels: pd.DataFrame, *, config: HeadConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, pseudo targets and folds of every window (box labels override the teacher's)."""
    offsets = np.cumsum([0] + [len(e.t_start_s) for e in corpus.embeddings.values()])
    first_row = dict(zip(corpus.embeddings, offsets[:-1]))
    targets = pseudo_targets(labels[corpus.species.columns].to_numpy(), thresholds=config.pseudo_thresholds)
    boxed = np.array([first_row[r] for r in corpus.window_recordings], dtype=np.int64) + corpus.window_rows
    targets[boxed] = np.where(np.isnan(corpus.targets), targets[boxed], np.nan)
    vectors = np.concatenate([corpus.embeddings[r].vectors for r in corpus.embeddings])
    folds = np.array([corpus.folds.get(r, -1) for r in labels["recording_id"]])
    return vectors, targets, folds


def _fit_round(round_dir: Path, corpus: _Corpus, *, config: HeadConfig, threads: int, pseudo: pd.DataFrame | None = None) -> None:
    from .metrics import masked_auc

    history, oofs = [], []
    if pseudo is not None:
        pseudo_vectors, pseudo_labels, pseudo_folds = _pseudo_rows(corpus, pseudo, config=config)
    for fold in range(corpus.n_folds):
        started = time.perf_counter()
        held_out = {r for r, f in corpus.folds.items() if f == fold}
        train_rows = np.array([r not in held_out for r in corpus.window_recordings])
        vectors, targets, weights = corpus.vectors[train_rows], corpus.targets[train_rows], None
        if pseudo is not None:
            mine = pseudo_folds != fold  # never the student's own held-out recordings
            vectors, targets, weights = with_pseudo_labels(vectors, targets, pseudo_vectors=pseudo_vectors[mine],
                                                           pseudo=pseudo_labels[mine], class_weight=config.class_weight,
                                                           pseudo_weight=config.pseudo_weight)
        params = fit_head(vectors, targets, config=config, seed=config.seed + fold, threads=threads, weights=weights)
        atomic_write_bytes(round_dir / f"fold{fold}" / HEAD_FILE, safetensors_bytes(params))
        entry = {"fold": fold, "train_windows": int(len(vectors)), "val_windows": int((~train_rows).sum()),
                 "seconds": round(time.perf_counter() - started, 3)}
        if held_out:
            val = ~train_rows
            entry["val_auc"], entry["val_auc_mean_species"] = masked_auc(
                y_true=corpus.targets[val], y_score=head_probabilities(params, corpus.vectors[val]))
            windows = score_windows({r: corpus.embeddings[r] for r in sorted(held_out)}, heads=[params], species=corpus.species)
            atomic_write_with(round_dir / f"fold{fold}" / OOF_WINDOWS_FILE, lambda tmp: windows.to_parquet(tmp, index=False))
            oof = aggregate_windows(windows, species_columns=corpus.species.columns, method=config.aggregate, top_k=config.top_k)
            oof.insert(1, "fold", fold)
            oofs.append(oof)
        history.append(entry)
    if oofs:
        pd.concat(oofs, ignore_index=True).to_csv(round_dir / "oof.csv", index=False)
    pd.DataFrame(history).to_csv(round_dir / "history.csv", index=False)  # written last: marks the round finished


def is_embedding_run(run_dir: str | Path) -> bool:
    import yaml

    path = Path(run_dir) / "config.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == HEAD_KIND


def load_embedding_run(run_dir: str | Path, *, pseudo_round: int | None = None) -> tuple[HeadConfig, SpeciesTable, list[dict[str, np.ndarray]]]:
    """A run of ``train_embedding_head``: its config, species and the fold heads of one round (default: the last)."""
    run_dir = Path(run_dir)
    config = load_any_config(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    if not isinstance(config, HeadConfig):
        raise InputError(f"{run_dir}: not an embedding-head run (config.yaml with kind: embedding-head); point --run at "
                         "a directory written by 'dawnchorus train --preset embed-linear' (or embed-mlp)")
    round_dir = resolve_round(run_dir, pseudo_round, weights=HEAD_FILE)
    heads = [load_file(str(p)) for p in sorted(round_dir.glob(f"fold*/{HEAD_FILE}"))]
    if not heads:
        raise InputError(f"{round_dir}: no trained fold (fold*/{HEAD_FILE}); train again with --resume")
    return config, read_species_csv(run_dir / "species.csv"), heads


@dataclass(frozen=True)
class EmbeddingPrediction:
    submission: pd.DataFrame  # recording_id, s0..sN, windows aggregated
    windows: pd.DataFrame  # recording_id, t_start_s, t_end_s, s0..sN
    species: SpeciesTable


def predict_embeddings(*, run_dir: str | Path, audio_dir: str | Path, cache_dir: str | Path, embedder: Embedder | None = None,
                       threads: int = 1, pseudo_round: int | None = None, aggregate: str | None = None, top_k: int | None = None,
                       progress: bool = False) -> EmbeddingPrediction:
    """Score every recording under ``audio_dir`` with a trained run (fold heads averaged); embeddings cached."""
    config, species, heads = load_embedding_run(run_dir, pseudo_round=pseudo_round)
    paths = find_audio_files(audio_dir, ids="path")
    if not paths:
        raise InputError(f"{audio_dir}: no audio recordings (FLAC, WAV, MP3, OGG) found")
    embedder = embedder or run_embedder(run_dir, config, threads=threads)
    if embedder.name != config.model:
        raise InputError(f"{run_dir}: trained on '{config.model}' embeddings, but the embedder is '{embedder.name}'; "
                         "predict with the same model")
    cache = EmbeddingCache(cache_dir, embedder=embedder, hop_s=config.hop_s)
    embeddings = embed_recordings(paths, cache=cache, progress=progress, desc="embed")
    windows = score_windows(embeddings, heads=heads, species=species)
    submission = aggregate_windows(windows, species_columns=species.columns, method=aggregate or config.aggregate,
                                   top_k=top_k or config.top_k)
    return EmbeddingPrediction(submission=submission, windows=windows, species=species)


class HeadScorer:
    """A trained embedding-head run as a window scorer (``batch.scoring.WindowScorer``): each
    window embedded, then the mean of the fold heads' probabilities, one column per species."""

    def __init__(self, *, run_dir: str | Path, embedder: Embedder | None = None, pseudo_round: int | None = None,
                 threads: int = 1):
        from .embeddings import EmbedderScorer

        config, self.species, self.heads = load_embedding_run(run_dir, pseudo_round=pseudo_round)
        embedder = embedder or run_embedder(run_dir, config, threads=threads)
        if embedder.name != config.model:
            raise InputError(f"{run_dir}: trained on '{config.model}' embeddings, but the embedder is '{embedder.name}'; "
                             "predict with the same model")
        self.run_dir, self.round_dir = Path(run_dir), resolve_round(run_dir, pseudo_round, weights=HEAD_FILE)
        self.embedder = EmbedderScorer(embedder, hop_s=config.hop_s)
        self.sample_rate_hz, self.window_s, self.hop_s = embedder.sample_rate_hz, embedder.window_s, config.hop_s
        self.batch_size, self.columns = embedder.batch_size, self.species.columns

    def score(self, windows: np.ndarray) -> np.ndarray:
        vectors = self.embedder.score(windows)
        return np.mean([head_probabilities(h, vectors) for h in self.heads], axis=0).astype(np.float32)

    def fingerprint(self) -> dict:
        heads = {str(p): file_digest(p) for p in sorted(self.round_dir.glob(f"fold*/{HEAD_FILE}"))}
        return {"detector": "embedding-head", "heads": heads, **self.embedder.fingerprint()}


def head_persistence_evidence(*, run_dir: str | Path, audio_dir: str | Path, cache_dir: str | Path,
                              windows: pd.DataFrame | None = None, threads: int = 1,
                              progress: bool = False) -> tuple[pd.DataFrame, int, float] | None:
    """``infer.persistence_evidence`` for a head run: each recording's k-th best window of round 0,
    with the k and threshold of the run's out-of-fold rule; None for runs without one.
    Pass ``windows`` when round 0 has already scored ``audio_dir``."""
    from .postprocess import species_columns_of
    from .priors import persistence_from_run
    from .scores import kth_best_window

    rule = persistence_from_run(run_dir)
    if rule is None:
        return None
    k, threshold = rule
    if windows is None:
        windows = predict_embeddings(run_dir=run_dir, audio_dir=audio_dir, cache_dir=cache_dir, threads=threads, pseudo_round=0,
                                     progress=progress).windows
    return kth_best_window(windows, species_columns=species_columns_of(windows, source="window scores"), k=k), k, threshold

