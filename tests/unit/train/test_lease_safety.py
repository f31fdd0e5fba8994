"""GPU leases on a machine shared by several users: no link followed, no file truncated, users exclude each other."""

import multiprocessing as mp
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from prunebench.errors import TrainingError
from prunebench.train.devices import LOCK_DIR_ENV, lease_gpu


def test_a_symlink_planted_in_the_lock_directory_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "thesis.tex"
    victim.write_text("years of work\n")
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "gpu-0.lock").symlink_to(victim)
    with pytest.raises(TrainingError, match=r"gpu-0\.lock is a symbolic link .*does not follow") as info:
        lease_gpu(["0"], locks, wait_seconds=0)
    assert LOCK_DIR_ENV in str(info.value)
    assert victim.read_text() == "years of work\n"
    (locks / "gpu-1.lock").symlink_to(tmp_path / "missing")  # a dangling link must not create its target
    with pytest.raises(TrainingError, match="symbolic link"):
        lease_gpu(["1"], locks, wait_seconds=0)
    assert not (tmp_path / "missing").exists()


def test_an_existing_lock_file_is_never_truncated(tmp_path):
    lock = tmp_path / "gpu-0.lock"
    lock.write_text("a line another tool wrote, longer than a pid\n")
    lease_gpu(["0"], tmp_path, wait_seconds=0).release()
    assert lock.read_text().endswith("longer than a pid\n")  # the pid overwrote the start, nothing was cut
    other = tmp_path / "elsewhere.txt"
    other.write_text("keep me\n")
    os.link(other, tmp_path / "gpu-1.lock")  # a hard link is a plain file: used for the flock, never written
    lease_gpu(["1"], tmp_path, wait_seconds=0).release()
    assert other.read_text() == "keep me\n"


def test_a_lock_directory_that_is_a_symlink_is_refused_naming_the_variable(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "locks").symlink_to(tmp_path / "real")
    with pytest.raises(TrainingError, match=rf"locks is a symbolic link .*Set {LOCK_DIR_ENV}"):
        lease_gpu(["0"], tmp_path / "locks", wait_seconds=0)
    assert list((tmp_path / "real").iterdir()) == []


def test_a_new_lock_directory_and_files_are_shared_by_all_users(tmp_path):
    old = os.umask(0o022)
    try:
        lease = lease_gpu(["0"], tmp_path / "locks", wait_seconds=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "locks" / "gpu-0.lock").stat().st_mode) == 0o666
    lease.release()


try:
    NOBODY = pwd.getpwnam("nobody")
except KeyError:
    NOBODY = None

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None, reason="simulating a second user needs root and a user `nobody`"
)


@pytest.fixture
def shared_tmp():
    """A folder like /tmp that the user `nobody` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="prunebench-lease-test-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


def second_user(locks, wait, report, release):
    """Lease GPU 0 as the user `nobody` (a forked process that drops root), report, hold until told."""
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)
    try:
        lease = lease_gpu(["0"], locks, wait_seconds=wait, poll=0.02)
    except Exception as exc:  # any error, a PermissionError included, goes back to the test
        report.put(f"{type(exc).__name__}: {exc}")
        return
    report.put("leased")
    release.wait(60)
    lease.release()


def as_nobody(locks, wait):
    ctx = mp.get_context("fork")
    report, release = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=second_user, args=(locks, wait, report, release))
    proc.start()
    return proc, report, release


@needs_root
def test_two_users_on_one_machine_exclude_each_other_without_errors(shared_tmp):
    locks = shared_tmp / "locks"
    mine = lease_gpu(["0"], locks, wait_seconds=0)  # root creates the directory and the lock file
    proc, report, _ = as_nobody(locks, 0.1)
    assert report.get(timeout=60).startswith("TrainingError: all 1 GPUs (0) stayed leased")
    proc.join(60)
    mine.release()

    proc, report, release = as_nobody(locks, 30)  # now the other user gets it, from root's lock file
    assert report.get(timeout=60) == "leased"
    with pytest.raises(TrainingError, match="stayed leased"):
        lease_gpu(["0"], locks, wait_seconds=0.1, poll=0.02)
    release.set()
    proc.join(60)
    lease_gpu(["0"], locks, wait_seconds=5, poll=0.02).release()


@needs_root
def test_a_second_user_shares_a_lock_directory_made_by_the_first(shared_tmp):
    locks = shared_tmp / "locks"
    proc, report, release = as_nobody(locks, 0)  # nobody creates the directory and the file first
    assert report.get(timeout=60) == "leased"
    assert locks.stat().st_uid == NOBODY.pw_uid
    with pytest.raises(TrainingError, match="stayed leased"):
        lease_gpu(["0"], locks, wait_seconds=0.1, poll=0.02)
    release.set()
    proc.join(60)
    lease_gpu(["0"], locks, wait_seconds=5, poll=0.02).release()


@needs_root
def test_a_lock_directory_of_another_user_that_is_not_sticky_is_refused(shared_tmp):
    locks = shared_tmp / "locks"
    locks.mkdir(mode=0o755)
    os.chown(locks, NOBODY.pw_uid, -1)  # nobody's private directory
    with pytest.raises(TrainingError, match=rf"belongs to user nobody .*mode 755.*{LOCK_DIR_ENV}"):
        lease_gpu(["0"], locks, wait_seconds=0)
    locks.chmod(0o1777)  # shared like /tmp: accepted
    lease_gpu(["0"], locks, wait_seconds=0).release()
