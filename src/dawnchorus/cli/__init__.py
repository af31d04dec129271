"""The ``dawnchorus`` command: a thin layer over the library API.

Each command parses its options, calls one library function and prints the result. Errors
the user can fix (``DawnchorusError``) are printed as one clear message with exit code 2.
Commands live by topic in ``data``, ``detect``, ``scores``, ``labels`` and ``search``; importing them
registers them on ``app``.
"""

from . import data, detect, labels, pretraining, scores, search, summaries  # noqa: F401  (registers the commands)
from ._app import app, main

__all__ = ["app", "main"]
