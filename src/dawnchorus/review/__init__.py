"""Human review of candidate detections: a local web page to mark them TP / FP, feeding training.

Candidates (template-matcher CSV or ``predict --detections`` Parquet) are stored in a SQLite
database with every decision made about them; :func:`export_labels` turns the latest
decisions into ``train_tp.csv`` / ``train_fp.csv``. :func:`create_app` builds the FastAPI app
(usable with FastAPI's TestClient), :func:`run_server` serves it.
"""

from .candidates import Candidate, read_candidates_csv, read_detections
from .export import ExportSummary, export_labels
from .server import create_app, run_server

__all__ = ["Candidate", "ExportSummary", "create_app", "export_labels", "read_candidates_csv", "read_detections", "run_server"]
