"""Atomic writes: the file appears whole or not at all, with the mode of a normal new file."""

import json
import os
import stat

import pytest

from prunebench.io import atomic_copy, atomic_write_json, atomic_write_text


def test_written_file_has_the_umask_mode_not_mkstemps_0600(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"ok": 1})

    def disk_full(fd):
        raise OSError("No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # fails after the temp file was written
    with pytest.raises(OSError, match="No space left"):
        atomic_write_json(target, {"ok": 2})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_atomic_copy_keeps_the_source(tmp_path):
    (tmp_path / "src.pt").write_bytes(b"abc")
    atomic_copy(tmp_path / "src.pt", tmp_path / "out" / "dst.pt")
    assert (tmp_path / "src.pt").read_bytes() == (tmp_path / "out" / "dst.pt").read_bytes() == b"abc"
