import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers (conftest, test_train_infer)
