"""A failed write (full disk, no permission) names the file and the cause, and leaves no temp file."""

import errno
import os
import shutil
import subprocess

import pytest
import torch

from prunebench.errors import WriteError
from prunebench.io import atomic_torch_save, atomic_write_json, atomic_write_text


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_the_cause(tmp_path, monkeypatch):
    target = tmp_path / "state1" / "summary.json"
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(WriteError) as info:
        atomic_write_json(target, {"ok": 1})
    message = str(info.value)
    assert str(target) in message and "no space left on device" in message
    assert f"df -h {target.parent}" in message
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert os.listdir(target.parent) == []  # the temp file is gone


def test_torch_saves_unexplained_write_failure_is_named_too(tmp_path, monkeypatch):
    def cpp_failure(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", cpp_failure)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(WriteError, match=r"cannot write .*last\.pt: no space left on device"):
        atomic_torch_save(tmp_path / "last.pt", {"w": torch.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(WriteError, match=r"permission denied .*make .* writable"):
        atomic_write_text(tmp_path / "a.txt", "x")


def test_torch_failure_with_space_left_still_points_at_the_disk(tmp_path, monkeypatch):
    def cpp_failure(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534\nframe #0 ...")

    monkeypatch.setattr(torch, "save", cpp_failure)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 39, 1 << 39))
    with pytest.raises(WriteError) as info:
        atomic_torch_save(tmp_path / "last.pt", {"w": torch.zeros(3)})
    message = str(info.value)
    assert message.startswith(f"cannot write {tmp_path / 'last.pt'}: the write stopped partway")
    assert "unexpected pos 576 vs 534" in message and "frame #0" not in message
    assert f"df -h {tmp_path}" in message and "full disk" in message
    assert list(tmp_path.iterdir()) == []


def test_free_space_is_judged_before_the_temp_file_gives_it_back(tmp_path, monkeypatch):
    """A temp file holding the last 10 MB of the disk: the disk is full until the temp file goes."""

    def cpp_failure(obj, f, *args, **kwargs):
        f.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    def free(folder):
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".last.pt.")]
        return shutil._ntuple_diskusage(1 << 30, 1 << 30, 0 if temps else 10 << 20)

    monkeypatch.setattr(torch, "save", cpp_failure)
    monkeypatch.setattr(shutil, "disk_usage", free)
    with pytest.raises(WriteError, match=r"last\.pt: no space left on device; free space"):
        atomic_torch_save(tmp_path / "last.pt", {"w": torch.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def _tmpfs(mount, size):
    """A tmpfs of ``size`` mounted at ``mount`` for one test, unmounted after (needs root and mount
    rights, as in CI's container; skipped elsewhere)."""
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 64 KiB tmpfs."""
    yield from _tmpfs(tmp_path / "tiny", "64k")


@pytest.fixture
def small_filesystem(tmp_path):
    """A 12 MiB tmpfs: once a failed temp file is removed, megabytes are free again."""
    yield from _tmpfs(tmp_path / "small", "12m")


@pytest.mark.parametrize("floats", [5_000_000, 9_000_000])  # 20 and 36 MB checkpoints on 12 MiB
def test_a_checkpoint_larger_than_a_disk_with_megabytes_free(small_filesystem, floats):
    target = small_filesystem / "state0" / "last.pt"
    atomic_torch_save(target, {"w": torch.zeros(250_000)})  # 1 MB fits
    with pytest.raises(WriteError) as info:
        atomic_torch_save(target, {"state_dict": {"w": torch.zeros(floats)}})
    assert str(info.value).startswith(f"cannot write {target}: no space left on device; free space")
    assert os.listdir(target.parent) == ["last.pt"]  # the old checkpoint stays, no temp file
    assert shutil.disk_usage(small_filesystem).free > 10 << 20  # megabytes free after the failure


def test_a_checkpoint_on_a_really_full_filesystem(tiny_filesystem):
    target = tiny_filesystem / "state0" / "last.pt"
    with pytest.raises(WriteError) as info:
        atomic_torch_save(target, {"state_dict": {"w": torch.zeros(100_000)}})  # 400 kB > 64 KiB
    assert str(info.value).startswith(f"cannot write {target}: no space left on device")
    assert os.listdir(target.parent) == []
    atomic_write_text(tiny_filesystem / "small.txt", "fits")  # the space was given back
    assert (tiny_filesystem / "small.txt").read_text() == "fits"
