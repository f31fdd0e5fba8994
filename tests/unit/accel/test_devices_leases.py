"""GPU leases on a machine shared by several users: no link followed, no file truncated, users exclude each other,
and no user can break another's lease."""

import multiprocessing as mp
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from prunebench.accel.devices import LOCK_DIR_ENV, lease_gpu, lock_file_name
from prunebench.errors import TrainingError


def mine(gpu_id: str) -> str:
    return lock_file_name(gpu_id, os.geteuid())


def test_a_symlink_planted_in_the_lock_directory_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "thesis.tex"
    victim.write_text("years of work\n")
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / mine("0")).symlink_to(victim)
    with pytest.raises(TrainingError, match=r"gpu-0\.\d+\.lock is a symbolic link .*does not follow") as info:
        lease_gpu(["0"], locks, wait_seconds=0)
    assert LOCK_DIR_ENV in str(info.value)
    assert victim.read_text() == "years of work\n"
    (locks / mine("1")).symlink_to(tmp_path / "missing")  # a dangling link must not create its target
    with pytest.raises(TrainingError, match="symbolic link"):
        lease_gpu(["1"], locks, wait_seconds=0)
    assert not (tmp_path / "missing").exists()


def test_an_existing_lock_file_is_never_truncated(tmp_path):
    lock = tmp_path / mine("0")
    lock.write_text("a line another tool wrote, longer than a pid\n")
    lease_gpu(["0"], tmp_path, wait_seconds=0).release()
    assert lock.read_text().endswith("longer than a pid\n")  # the pid overwrote the start, nothing was cut
    other = tmp_path / "elsewhere.txt"
    other.write_text("keep me\n")
    os.link(other, tmp_path / mine("1"))  # a hard link is a plain file: used for the flock, never written
    lease_gpu(["1"], tmp_path, wait_seconds=0).release()
    assert other.read_text() == "keep me\n"


def test_a_lock_directory_that_is_a_symlink_is_refused_naming_the_variable(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "locks").symlink_to(tmp_path / "real")
    with pytest.raises(TrainingError, match=rf"locks \({LOCK_DIR_ENV}\) is a symbolic link .*Unset {LOCK_DIR_ENV}"):
        lease_gpu(["0"], tmp_path / "locks", wait_seconds=0)
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory made by root is shared; a user's is their own")
def test_a_new_lock_directory_made_by_root_is_shared_and_a_lock_file_readable_by_all(tmp_path):
    old = os.umask(0o022)
    try:
        lease = lease_gpu(["0"], tmp_path / "locks", wait_seconds=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "locks" / mine("0")).stat().st_mode) == 0o644  # others' jobs probe it
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


def second_user_deletes(path, report):
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)
    try:
        os.unlink(path)
    except OSError as exc:
        report.put(type(exc).__name__)
        return
    report.put("deleted")


@needs_root
def test_no_other_user_can_delete_a_held_lock_file(shared_tmp):
    locks = shared_tmp / "locks"
    lease = lease_gpu(["0"], locks, wait_seconds=0)
    ctx = mp.get_context("fork")
    report = ctx.Queue()
    proc = ctx.Process(target=second_user_deletes, args=(locks / mine("0"), report))
    proc.start()
    assert report.get(timeout=60) == "PermissionError"
    proc.join(60)
    lease.release()


OTHER_UID = 12345  # a user with no name on this machine


@needs_root
@pytest.mark.parametrize("mode", [0o1777, 0o755])
def test_a_lock_directory_of_another_user_is_refused_naming_its_owner_and_the_fix(tmp_path, mode):
    locks = tmp_path / "locks"
    locks.mkdir()
    os.chown(locks, OTHER_UID, -1)
    locks.chmod(mode)  # sticky or not: its owner may delete the lock files in it
    with pytest.raises(TrainingError) as info:
        lease_gpu(["0"], locks, wait_seconds=0)
    msg = str(info.value)
    assert f"{locks} ({LOCK_DIR_ENV}) belongs to uid {OTHER_UID} (mode {mode:o}), neither root nor you" in msg
    assert f"Unset {LOCK_DIR_ENV} to use /tmp" in msg and "owned by root with mode 1777" in msg
    assert list(locks.iterdir()) == []  # nothing was created in it
    os.chown(locks, 0, -1)  # root's: accepted
    lease_gpu(["0"], locks, wait_seconds=0).release()


def second_user_leases_in(locks, report):
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)
    try:
        lease_gpu(["0"], locks, wait_seconds=0).release()
    except Exception as exc:
        report.put(f"{type(exc).__name__}: {exc}")
        return
    report.put("leased")


@needs_root
def test_a_user_trusts_a_lock_directory_of_root_or_their_own(shared_tmp):
    ctx = mp.get_context("fork")
    for owner, mode in ((0, 0o1777), (NOBODY.pw_uid, 0o700), (OTHER_UID, 0o1777)):
        locks = shared_tmp / f"locks-{owner}"
        locks.mkdir()
        os.chown(locks, owner, -1)
        locks.chmod(mode)
        report = ctx.Queue()
        proc = ctx.Process(target=second_user_leases_in, args=(locks, report))
        proc.start()
        answer = report.get(timeout=60)
        proc.join(60)
        assert (answer == "leased") == (owner != OTHER_UID), (owner, answer)


@needs_root
def test_another_users_lock_file_blocks_the_gpu_only_while_it_is_held(tmp_path):
    import fcntl

    theirs = tmp_path / lock_file_name("0", OTHER_UID)
    theirs.write_text("")
    os.chown(theirs, OTHER_UID, -1)
    fd = os.open(theirs, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a job of theirs holds GPU 0
    try:
        with pytest.raises(TrainingError, match="stayed leased"):
            lease_gpu(["0"], tmp_path, wait_seconds=0.1, poll=0.02)
    finally:
        os.close(fd)
    lease_gpu(["0"], tmp_path, wait_seconds=0).release()
    # a file named for another uid than its owner's is no job's lease (its owner's jobs lock their own)
    (tmp_path / lock_file_name("1", 4242)).write_text("")
    fd = os.open(tmp_path / lock_file_name("1", 4242), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    lease_gpu(["1"], tmp_path, wait_seconds=0).release()
    os.close(fd)


@needs_root
def test_a_lock_file_under_my_name_that_another_user_owns_is_refused(tmp_path):
    planted = tmp_path / mine("0")
    planted.write_text("")
    os.chown(planted, OTHER_UID, -1)  # its owner could delete it under a held lease
    with pytest.raises(TrainingError, match=rf"is named for you but belongs to uid {OTHER_UID}.*remove it"):
        lease_gpu(["0"], tmp_path, wait_seconds=0)
