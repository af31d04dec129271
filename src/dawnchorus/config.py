"""One frozen, typed configuration per run, saved as YAML beside every output.

Presets are YAML files in ``dawnchorus/resources/presets``; ``--set section.key=value``
overrides any field with type checking, and ``load_config(run_dir / "config.yaml")``
reloads exactly what a run used, so it can be repeated.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_write_text
from .errors import InputError


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate_hz: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    win_length: int | None = None
    window: str = "hann"
    n_mels: int = 96
    f_min_hz: float = 50.0
    f_max_hz: float = 16000.0
    power: float = 2.0
    top_db: float | None = 80.0
    normalize: str = "instance"  # "instance" (per-example standardisation) or "none"
    extra_channels: tuple[str, ...] = ("freq",)

    @property
    def in_chans(self) -> int:
        return 1 + len(self.extra_channels)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_length


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "mobilenetv3_small_100"
    head: str = "clip"  # see models.HEADS
    pool: str = "avgmax"  # clip head pooling: "avgmax" or "gem"
    classes: str = "species"  # "species" or "songtype" (species x song type, folded back at output)
    dropout: float = 0.2
    weights: str | None = None  # local file with backbone weights; never downloaded


@dataclass(frozen=True)
class LossConfig:
    name: str = "masked_bce"  # see losses.LOSSES
    label_mode: str = "masked"  # "masked", "naive" (unknown = 0) or "tp_only"
    focal_gamma: float = 2.0
    lsoft_beta: float = 0.7
    pos_weight: float = 1.0
    clip_weight: float = 1.0  # weight of the loss on clip outputs
    frame_weight: float = 0.0  # weight of the loss on box frames (heads with a frame output: frame, sed, clip_frame)


@dataclass(frozen=True)
class SamplingConfig:
    crop_s: float = 3.0
    min_box_inside: float = 0.6  # fraction of a box (or of the crop) that must stay inside the crop
    crops_per_epoch: int = 2000
    tp_fraction: float = 0.5  # share of crops drawn around TP boxes (the rest around FP boxes)
    label_frames_per_s: float = 10.0  # time resolution of frame targets (used when loss.frame_weight > 0)


@dataclass(frozen=True)
class AugmentConfig:
    gain_db: float = 6.0
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    time_shift_fraction: float = 0.0  # circular shift of up to this fraction of the crop, either way
    spec_time_masks: int = 2
    spec_time_mask_frames: int = 20
    spec_freq_masks: int = 2
    spec_freq_mask_bins: int = 8
    mixup_prob: float = 0.5
    mixup_alpha: float = 2.0
    # real soundscapes mixed under training crops (the BirdCLEF winners' habit): a folder of
    # recordings, the share of crops that get one, its level below the crop, and how much of
    # the folder is held in memory. A mixed crop's absent species become unknown, since a real
    # soundscape may hold them; give "keep" for backgrounds known to hold none of the species.
    background_dir: str | None = None
    background_prob: float = 0.0
    background_snr_db: tuple[float, float] = (0.0, 15.0)
    background_max_s: float = 1800.0
    background_labels: str = "unknown"  # or "keep"


@dataclass(frozen=True)
class TrainConfig:
    folds: int = 5
    train_folds: tuple[int, ...] | None = None  # None = every fold
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 0.5
    grad_clip: float = 5.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast on CUDA
    checkpoint_every_steps: int = 50
    average_best: int = 1  # average the weights of the N best epochs
    cache_dir: str | None = None  # decoded-audio cache; None = <run>/audio_cache


@dataclass(frozen=True)
class InferConfig:
    window_s: float = 3.0
    hop_s: float = 1.5
    batch_size: int = 64
    aggregate: str = "max"  # "max" or "topk_mean"
    top_k: int = 3  # windows topk_mean averages; also those a species must pass to count in prior estimation
    frame_step_s: float | None = None  # framewise scores on this grid (None: one row per window)
    extra_window_s: tuple[float, ...] = ()  # multi-scale: more window lengths, averaged on the frame grid
    tta_shifts: int = 1  # passes with windows shifted by hop/N, averaged on the frame grid


@dataclass(frozen=True)
class PseudoConfig:
    rounds: int = 0  # pseudo-label rounds after the first training
    step_s: float = 0.5  # time resolution of the teacher's framewise labels
    prob: float = 0.5  # share of crops drawn anywhere in pseudo-labelled recordings (the rest around boxes)
    weight: float = 0.5  # loss weight of pseudo targets (hard box labels weigh 1 and override them)
    audio_dir: str | None = None  # more recordings to pseudo-label, e.g. the test split (transductive)
    init: str = "teacher"  # student starts from the teacher's weights ("teacher") or from scratch ("scratch")
    epochs: int | None = None  # epochs per round (None: train.epochs)
    hard_thresholds: tuple[float, float] | None = None  # (low, high): scores become 0 / unknown / 1 (10th place)


@dataclass(frozen=True)
class RunConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)

    def __post_init__(self) -> None:
        problems = [f"{key}={value!r} ({allowed})" for key, value, ok, allowed in _run_checks(self) if not ok]
        if problems:
            raise InputError("config: invalid " + "; ".join(problems))


def _ordered_pair(pair, low: float = float("-inf"), high: float = float("inf")) -> bool:
    return pair is None or (len(pair) == 2 and low <= pair[0] <= pair[1] <= high)


def _run_checks(c: "RunConfig") -> list[tuple[str, Any, bool, str]]:
    """(key path, value, valid, what is allowed) for every checked field; choices that live in
    other modules (backbones, heads, losses) are checked by ``train`` before it reads any data."""
    f, m, lo, s, a, t, i, p = c.features, c.model, c.loss, c.sampling, c.augment, c.train, c.infer, c.pseudo
    nyquist = f.sample_rate_hz / 2
    return [
        ("features.sample_rate_hz", f.sample_rate_hz, f.sample_rate_hz >= 1000, "at least 1000"),
        ("features.n_fft", f.n_fft, f.n_fft >= 16, "at least 16"),
        ("features.hop_length", f.hop_length, f.hop_length >= 1, "at least 1"),
        ("features.n_mels", f.n_mels, f.n_mels >= 1, "at least 1"),
        ("features.f_min_hz", f.f_min_hz, 0 <= f.f_min_hz < f.f_max_hz, "0 or more, below features.f_max_hz"),
        ("features.f_max_hz", f.f_max_hz, f.f_max_hz <= nyquist, f"at most sample_rate_hz / 2 = {nyquist:g}"),
        ("features.normalize", f.normalize, f.normalize in ("instance", "none"), "instance or none"),
        ("features.top_db", f.top_db, f.top_db is None or f.top_db > 0, "positive or null"),
        ("model.pool", m.pool, m.pool in ("avgmax", "gem"), "avgmax or gem"),
        ("model.classes", m.classes, m.classes in ("species", "songtype"), "species or songtype"),
        ("model.dropout", m.dropout, 0 <= m.dropout < 1, "0 <= dropout < 1"),
        ("loss.label_mode", lo.label_mode, lo.label_mode in ("masked", "naive", "tp_only"), "masked, naive or tp_only"),
        ("loss.pos_weight", lo.pos_weight, lo.pos_weight > 0, "positive"),
        ("loss.clip_weight", lo.clip_weight, lo.clip_weight >= 0 and lo.clip_weight + lo.frame_weight > 0,
         "0 or more, and clip_weight + frame_weight positive"),
        ("loss.frame_weight", lo.frame_weight, lo.frame_weight >= 0, "0 or more"),
        ("sampling.crop_s", s.crop_s, s.crop_s > 0, "positive seconds"),
        ("sampling.min_box_inside", s.min_box_inside, 0 < s.min_box_inside <= 1, "0 < share <= 1"),
        ("sampling.crops_per_epoch", s.crops_per_epoch, s.crops_per_epoch >= 1, "at least 1"),
        ("sampling.tp_fraction", s.tp_fraction, 0 <= s.tp_fraction <= 1, "a share between 0 and 1"),
        ("augment.noise_prob", a.noise_prob, 0 <= a.noise_prob <= 1, "a probability"),
        ("augment.noise_snr_db", a.noise_snr_db, _ordered_pair(a.noise_snr_db), "[low, high] with low <= high"),
        ("augment.mixup_prob", a.mixup_prob, 0 <= a.mixup_prob <= 1, "a probability"),
        ("augment.mixup_alpha", a.mixup_alpha, a.mixup_alpha > 0, "positive"),
        ("augment.background_prob", a.background_prob, 0 <= a.background_prob <= 1 and (a.background_prob == 0 or a.background_dir),
         "a probability; above 0 it needs augment.background_dir"),
        ("augment.background_snr_db", a.background_snr_db, _ordered_pair(a.background_snr_db), "[low, high] with low <= high"),
        ("augment.background_labels", a.background_labels, a.background_labels in ("unknown", "keep"), "unknown or keep"),
        ("train.folds", t.folds, t.folds >= 1, "at least 1"),
        ("train.train_folds", t.train_folds, t.train_folds is None or (len(t.train_folds) > 0 and all(0 <= k < t.folds for k in t.train_folds)),
         f"null or fold numbers from 0 to train.folds - 1 = {t.folds - 1}"),
        ("train.epochs", t.epochs, t.epochs >= 1, "at least 1"),
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "at least 1"),
        ("train.lr", t.lr, t.lr > 0, "positive"),
        ("train.num_workers", t.num_workers, t.num_workers >= 0, "0 or more"),
        ("train.checkpoint_every_steps", t.checkpoint_every_steps, t.checkpoint_every_steps >= 1, "at least 1"),
        ("train.average_best", t.average_best, t.average_best >= 1, "at least 1"),
        ("infer.window_s", i.window_s, i.window_s > 0, "positive seconds"),
        ("infer.hop_s", i.hop_s, i.hop_s > 0, "positive seconds"),
        ("infer.batch_size", i.batch_size, i.batch_size >= 1, "at least 1"),
        ("infer.aggregate", i.aggregate, i.aggregate in ("max", "topk_mean"), "max or topk_mean"),
        ("infer.top_k", i.top_k, i.top_k >= 1, "at least 1"),
        ("infer.tta_shifts", i.tta_shifts, i.tta_shifts >= 1, "at least 1"),
        ("pseudo.rounds", p.rounds, p.rounds >= 0, "0 or more"),
        ("pseudo.prob", p.prob, 0 <= p.prob <= 1, "a probability"),
        ("pseudo.init", p.init, p.init in ("teacher", "scratch"), "teacher or scratch"),
        ("pseudo.hard_thresholds", p.hard_thresholds, p.hard_thresholds is None or (
            _ordered_pair(p.hard_thresholds, 0, 1) and p.hard_thresholds[0] < p.hard_thresholds[1]), "null or [low, high], 0 <= low < high <= 1"),
    ]


HEAD_KIND = "embedding-head"  # the ``kind`` of a YAML config for a head on pretrained embeddings
EMBEDDERS = ("birdnet", "templates")  # what a head's windows are embedded with


@dataclass(frozen=True)
class HeadConfig:
    """A small head on frozen pretrained embeddings (``kind: embedding-head`` in YAML; flat keys)."""

    head: str = "linear"  # linear (one logistic regression per species) or mlp (one hidden layer, all species)
    folds: int = 5
    seed: int = 0
    hop_s: float = 1.5  # hop between the embedder's 3 s windows (the presets' value)
    min_box_inside: float = 0.6  # share of a box (or of the window) inside a window for it to count, as for crops
    class_weight: str = "balanced"  # balanced (positives and negatives of a species weigh alike) or none
    c: float = 0.1  # linear: inverse L2 strength of the logistic regression
    hidden: int = 256  # mlp: hidden units
    dropout: float = 0.2
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    aggregate: str = "topk_mean"  # recording score from window scores: max or topk_mean
    top_k: int = 4
    # prevalence estimation counts a species where this many windows pass the out-of-fold threshold
    # (calibration.json); None: no calibration, recordings counted at 0.5 (what embed-* were measured with)
    persistence_windows: int | None = None
    pseudo_rounds: int = 0  # rounds in which the heads label every window and a student retrains on them
    pseudo_weight: float = 0.5  # total pseudo-label weight per species, relative to the box labels'
    pseudo_thresholds: tuple[float, float] | None = (0.1, 0.9)  # scores become 0 / unknown / 1; None: soft targets
    pseudo_audio_dir: str | None = None  # more recordings to pseudo-label, e.g. the test split (transductive)
    embedder: str = "birdnet"  # birdnet (optional extra) or templates (the training boxes' own calls, template_bank)
    template_boxes: str = "tp"  # templates: the boxes that become patches, tp or tp+fp
    template_window_s: float = 3.0  # templates: window length the patches are matched in
    template_sample_rate_hz: int = 32000  # templates: rate the audio is matched at (boxes cut at its Nyquist frequency)
    template_frame_pool: int = 2  # templates: spectrogram frames averaged into one before matching
    model: str = ""  # the embedder's name, filled in by training
    window_s: float = 3.0  # the embedder's window, filled in by training

    def __post_init__(self) -> None:
        checks = {
            "head": self.head in ("linear", "mlp"), "class_weight": self.class_weight in ("balanced", "none"),
            "aggregate": self.aggregate in ("max", "topk_mean"), "folds": self.folds >= 1, "top_k": self.top_k >= 1,
            "persistence_windows": self.persistence_windows is None or self.persistence_windows >= 1,
            "hop_s": self.hop_s > 0, "c": self.c > 0, "hidden": self.hidden >= 1, "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "min_box_inside": 0 < self.min_box_inside <= 1,
            "dropout": 0 <= self.dropout < 1, "pseudo_rounds": self.pseudo_rounds >= 0, "pseudo_weight": self.pseudo_weight > 0,
            "embedder": self.embedder in EMBEDDERS, "template_boxes": self.template_boxes in ("tp", "tp+fp"),
            "template_window_s": self.template_window_s > 0, "template_sample_rate_hz": self.template_sample_rate_hz >= 2000,
            "template_frame_pool": self.template_frame_pool >= 1,
            "pseudo_thresholds": self.pseudo_thresholds is None or (len(self.pseudo_thresholds) == 2
                                  and 0 <= self.pseudo_thresholds[0] < self.pseudo_thresholds[1] <= 1),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise InputError(f"embedding-head config: invalid {shown} (head: linear|mlp, class_weight: balanced|none, "
                             "aggregate: max|topk_mean, embedder: birdnet|templates, template_boxes: tp|tp+fp, "
                             "template_sample_rate_hz >= 2000, counts >= 1, pseudo_thresholds: (low, high) with low < high)")


def head_config_from_dict(raw: dict, *, source: str) -> HeadConfig:
    values = {k: v for k, v in raw.items() if k != "kind"}
    return _build(HeadConfig, values, where=source)


def with_head_overrides(config: HeadConfig, overrides: list[str]) -> HeadConfig:
    """Apply ``key=value`` strings to an embedding-head config (flat keys, values parsed as YAML)."""
    raw = dataclasses.asdict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in raw or key in ("model", "window_s"):
            names = ", ".join(k for k in raw if k not in ("model", "window_s"))
            raise InputError(f"--set '{item}': embedding-head configs take key=value with a key among {names}")
        try:
            raw[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raw[key] = text
    return head_config_from_dict(raw, source="--set")


def save_head_config(config: HeadConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"kind": HEAD_KIND, **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}}
    return atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))


def load_any_config(name_or_path: str | Path) -> RunConfig | HeadConfig:
    """A preset name or a YAML file (a preset or a run's config.yaml) of either kind of model."""
    if str(name_or_path).endswith((".yaml", ".yml")):
        raw, source = _read_yaml(Path(name_or_path)), str(name_or_path)
    else:
        raw, source = _read_yaml(_preset_path(str(name_or_path))), f"preset {name_or_path}"
    if isinstance(raw, dict) and raw.get("kind") == HEAD_KIND:
        return head_config_from_dict(raw, source=source)
    return from_dict(raw, source=source)


def _read_yaml(path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None


def _preset_path(name: str):
    path = resources.files("dawnchorus.resources") / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"unknown preset '{name}'; choose from {', '.join(preset_names())} or pass a YAML file")
    return path


def preset_names() -> list[str]:
    folder = resources.files("dawnchorus.resources") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> RunConfig:
    return _cnn_config(_read_yaml(_preset_path(name)), source=f"preset {name}")


def load_config(path: str | Path) -> RunConfig:
    return _cnn_config(_read_yaml(Path(path)), source=str(path))


def _cnn_config(raw: Any, *, source: str) -> RunConfig:
    if isinstance(raw, dict) and raw.get("kind") == HEAD_KIND:
        raise InputError(f"{source}: is an embedding-head config, not a CNN run config")
    return from_dict(raw, source=source)


def save_config(config: RunConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def to_dict(config: RunConfig) -> dict:
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(raw: dict, *, source: str) -> RunConfig:
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of sections ({', '.join(_sections())})")
    sections = {}
    for name, value in raw.items():
        section_type = _sections().get(name)
        if section_type is None:
            raise InputError(f"{source}: unknown section '{name}'; sections are {', '.join(_sections())}")
        if not isinstance(value, dict):
            raise InputError(f"{source}: section '{name}' must be a mapping")
        sections[name] = _build(section_type, value, where=f"{source}: {name}")
    return RunConfig(**sections)


def with_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings (values parsed as YAML: numbers, lists, null)."""
    raw = to_dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise InputError(f"--set '{item}': expected section.key=value, e.g. train.epochs=5")
        if section not in raw:
            raise InputError(f"--set '{item}': unknown section '{section}'; sections are {', '.join(raw)}")
        if name not in raw[section]:
            raise InputError(f"--set '{item}': unknown key '{name}' in {section}; keys are {', '.join(raw[section])}")
        try:
            raw[section][name] = yaml.safe_load(text)
        except yaml.YAMLError:
            raw[section][name] = text
    return from_dict(raw, source="--set")


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(RunConfig)}


# Keys renamed since a run could have saved them: old name -> new name (same meaning).
RENAMED_KEYS = {"time_shift_s": "time_shift_fraction"}


def _build(section_type: type, values: dict, *, where: str):
    hints = typing.get_type_hints(section_type)
    values = {RENAMED_KEYS.get(k, k): v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(section_type)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(sorted(known))}")
    return section_type(**{k: _coerce(v, hints[k], where=f"{where}.{k}") for k, v in values.items()})


def _coerce(value: Any, hint: Any, *, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, where=where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}: expected true or false, got {value!r}")
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is Any:
        return value
    raise InputError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
