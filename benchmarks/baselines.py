"""Constant-prior baselines on the standard synthetic corpus: the floor for every model."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import stamp, standard_corpus  # noqa: E402

from dawnchorus.baselines import constant_prior_submission  # noqa: E402
from dawnchorus.data import load_dataset, rfcx_test_prevalence  # noqa: E402
from dawnchorus.metrics import evaluate  # noqa: E402
from dawnchorus.submission import write_submission  # noqa: E402


def main() -> None:
    corpus = standard_corpus()
    dataset = load_dataset(corpus)
    print(f"# constant-prior baselines ({stamp()})")
    print("| predictor | LWLRAP | mAP |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, prior in (("constant prior: training-label frequency", None),
                            ("constant prior: host paper's test prevalence", rfcx_test_prevalence())):
            path = write_submission(Path(tmp) / "sub.csv", constant_prior_submission(dataset=dataset, prior=prior))
            report = evaluate(truth_path=corpus / "truth" / "test_labels.csv", pred_path=path)
            print(f"| {name} | {report.lwlrap:.4f} | {report.map:.4f} |")


if __name__ == "__main__":
    main()
