"""Errors that dawnchorus raises for bad input.

Every error a user can cause carries a message naming the file, row or field at fault
and what to do about it, so the CLI can print it without a traceback.
"""

from __future__ import annotations


class DawnchorusError(Exception):
    """Base class for errors caused by the user's input or environment."""


class InputError(DawnchorusError, ValueError):
    """A file, table or argument is malformed. The message says where and how to fix it."""


class ValidationError(InputError):
    """A table failed validation; ``problems`` lists every problem found, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = [f"{source}: {len(self.problems)} problem(s) found:"] + [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class AudioError(InputError):
    """An audio file is missing, empty, corrupt or unreadable."""


class OutputError(DawnchorusError):
    """An output could not be written (disk full, read-only folder, no permission). The message
    names the path; what was finished before it is kept."""


def unwritable(path, exc: OSError) -> OutputError:
    """The error to raise when writing ``path`` failed with ``exc``."""
    reason = exc.strerror or str(exc)
    return OutputError(f"{path}: cannot write ({reason}); free some space or choose a folder you can write to, then run "
                       "the same command again (train: with --resume). Finished files are kept")
