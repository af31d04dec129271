"""Synthetic RFCx-style soundscape corpus: bird and frog calls in noisy 60 s recordings.

``generate_corpus(out_dir=..., config=SynthConfig(...))`` writes audio, Kaggle-style TP/FP labels
and the full ground truth. See :mod:`dawnchorus.synth.corpus` for the layout,
:mod:`dawnchorus.synth.scene` for the SNR definition, :mod:`dawnchorus.synth.plan` for how
presence and labels are drawn and :mod:`dawnchorus.synth.calls` for the call recipes.
"""

from dawnchorus.synth.config import SynthConfig
from dawnchorus.synth.corpus import CorpusSummary, generate_corpus

__all__ = ["CorpusSummary", "SynthConfig", "generate_corpus"]
