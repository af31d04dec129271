"""Files replaced in one step: the old file or the new one, never half; a failed write names the path."""

from __future__ import annotations

import errno
import os

import pytest

from dawnchorus import atomic
from dawnchorus.errors import DawnchorusError


def test_text_and_bytes_are_written_whole_and_exactly(tmp_path):
    assert atomic.atomic_write_text(tmp_path / "deep" / "a.csv", "héllo\r\n").read_bytes() == "héllo\r\n".encode()
    assert atomic.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = atomic.atomic_write_text(tmp_path / "a.csv", "old")

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(DawnchorusError, match="a.csv"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
