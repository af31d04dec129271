"""Files replaced in one step: a reader (or a resumed job) sees the old file or the new one, never half.

A write that fails (a full disk, a read-only folder) removes its temporary file and raises
:class:`~dawnchorus.errors.OutputError` naming the path, so the user sees where and why, not a
library's traceback; the file it would have replaced is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError, unwritable


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    return _replace_with(Path(path), lambda handle: handle.write(data), mode="wb")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    return _replace_with(Path(path), lambda handle: handle.write(text), mode="w")


def atomic_write_with(path: Path, write) -> Path:
    """Let ``write(temporary_path)`` write the file (e.g. ``DataFrame.to_parquet``), then rename it to ``path``.

    ``write`` must raise ``OSError`` when the disk fails; serialisers that hide it in their own error
    types (safetensors, ``torch.save``) should serialise to bytes and use :func:`atomic_write_bytes`.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise unwritable(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _temporary(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise unwritable(path, exc) from None
    os.close(fd)
    return tmp


def _replace_with(path: Path, write, *, mode: str) -> Path:
    def through_handle(tmp: str) -> None:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write_with(path, through_handle)


def path_inside(root: Path, relative: str, *, what: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` once ``..``, absolute parts and
    links already on disk are resolved: a name taken from a label file must not write elsewhere."""
    root = Path(root)
    target = root / relative
    if Path(relative).is_absolute() or not target.resolve().is_relative_to(root.resolve()):
        raise InputError(f"{what} {relative!r} would write outside {root}; use a plain name or a relative path "
                         "without '..' (and no link out of the folder)")
    return target
