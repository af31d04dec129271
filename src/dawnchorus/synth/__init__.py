"""Synthetic RFCx-style soundscape corpus: bird and frog calls in noisy 60 s recordings.

``generate_corpus(out_dir=..., config=SynthConfig(...))`` writes audio, Kaggle-style TP/FP labels
and the full ground truth. See :mod:`dawnchorus.synth.corpus` for the layout,
:mod:`dawnchorus.synth.scene` for the SNR definition, :mod:`dawnchorus.synth.plan` for how
presence and labels are drawn and :mod:`dawnchorus.synth.calls` for the call recipes and :mod:`dawnchorus.synth.worlds` for the named
worlds that defaults are chosen on and reported on.
"""

from dawnchorus.synth.config import SynthConfig
from dawnchorus.synth.corpus import CorpusSummary, generate_corpus
from dawnchorus.synth.worlds import REPORT_WORLDS, TUNING_WORLDS, WORLDS, World, world

__all__ = ["CorpusSummary", "REPORT_WORLDS", "SynthConfig", "TUNING_WORLDS", "WORLDS", "World", "generate_corpus", "world"]
