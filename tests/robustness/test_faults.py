"""Injected faults during prediction: running out of device memory halves the batch and goes on."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dawnchorus import infer
from dawnchorus.errors import InputError
from dawnchorus.train import train

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from test_train_infer import corpus, fast_config  # noqa: E402,F401  (corpus is a fixture)


def test_out_of_memory_halves_the_batch_and_scores_stay_the_same(corpus, tmp_path, monkeypatch):
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=fast_config("infer.batch_size=8"))
    reference = infer.predict(run_dirs=[run], audio_dir=corpus / "test").windows
    real = infer._batch_scores

    def small_memory(loaded, batch, *, fold_classes):
        if batch.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(loaded, batch, fold_classes=fold_classes)

    monkeypatch.setattr(infer, "_batch_scores", small_memory)
    with pytest.warns(UserWarning, match=r"out of memory on cpu for a batch of \d+ windows; scoring it as \d+ \+ \d+"):
        retried = infer.predict(run_dirs=[run], audio_dir=corpus / "test").windows
    columns = [c for c in reference.columns if c.startswith("s")]
    assert np.allclose(retried[columns].to_numpy(), reference[columns].to_numpy(), atol=1e-5)

    monkeypatch.setattr(infer, "_batch_scores", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("injected")))
    with pytest.raises(InputError, match="one window does not fit in the memory of cpu"), pytest.warns(UserWarning):
        infer.predict(run_dirs=[run], audio_dir=corpus / "test")
