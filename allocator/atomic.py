"""Writing files and folders so that a failed or killed run leaves the previous state intact.

Work in progress lives beside its target under a hidden name, `.<target name>.<random>.tmp`,
and is renamed over the target only when complete. A run killed mid-write (SIGKILL, power loss)
can leave such a leftover behind; it is hidden, harmless, never renamed into place later, and
`is_leftover` tells it apart from a finished file or folder, so nothing reads it as a report or
a decision record. Finished files get the permissions the user's umask implies (as `open` would
give them), not the 0600/0700 of `tempfile`.

While a run writes, it holds an exclusive `flock` on its staging file or folder (the lock
goes with the open descriptor, so the kernel releases it when the process dies, SIGKILL
included). `clean_leftovers(folder)` removes the leftovers in a folder whose lock it can take,
and only those older than LEFTOVER_MIN_AGE_S -- a second guard for file systems where locks
are not shared between machines (some network file systems).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LEFTOVER_SUFFIX = ".tmp"
LEFTOVER_MIN_AGE_S = 300.0  # a leftover younger than this is never removed, lock or not


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    # Linux: reading the umask from /proc leaves it untouched (no window for other threads).
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, then restore it
    os.umask(mask)
    return mask


def is_leftover(path: str | Path) -> bool:
    """True for the hidden work-in-progress name `atomic_path`/`atomic_dir` write under."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(LEFTOVER_SUFFIX) and name != LEFTOVER_SUFFIX


def _staging_prefix(target: Path) -> str:
    return f".{target.name}."


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_staging_prefix(target), suffix=LEFTOVER_SUFFIX,
                                    dir=target.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is in place (or the process dies)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file 0600; a report or record file is meant to be shared as any
        # file the user creates would be.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; rename it to `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=LEFTOVER_SUFFIX,
                                dir=target.parent))
    fd = _lock(tmp)
    try:
        yield tmp
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def _lock(path: Path) -> int:
    """Open `path` (file or folder) and hold an exclusive lock on it; returns the descriptor."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextlib.contextmanager
def held(path: Path) -> Iterator[Path]:
    """Create `path` (a staging file named by `is_leftover`'s rule) and hold its lock meanwhile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    fd = _lock(path)
    try:
        yield path
    finally:
        os.close(fd)


def clean_leftovers(folder: Path, min_age_s: float | None = None, *,
                    target_name: str | None = None) -> list[Path]:
    """Remove the abandoned staging files and folders in `folder`; returns what was removed.

    Only names `is_leftover` recognises (with `target_name`: only the staging names of that
    target, `.<target_name>.*.tmp`, for a folder the engine does not own, such as the report's),
    only when no process holds their lock, and only when older than `min_age_s` (default
    LEFTOVER_MIN_AGE_S). A symbolic link is never followed.
    """
    folder = Path(folder)
    age = LEFTOVER_MIN_AGE_S if min_age_s is None else min_age_s
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in sorted(folder.iterdir()):
        if not is_leftover(path) or path.is_symlink():
            continue
        # a staged file's own staging file is `..<target>.<run>.tmp.<random>.tmp`
        if target_name is not None and not path.name.lstrip(".").startswith(f"{target_name}."):
            continue
        try:
            if now - path.lstat().st_mtime < age:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live run holds it
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    """A hidden, locked work folder in `parent`, removed on leaving (a killed run's is a
    leftover by `is_leftover`'s rule, which the next one removes); `parent` is created for it
    and removed again if it was created here and is left empty: a failed run leaves nothing."""
    parent = Path(parent)
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(parent, target_name=name)  # what a killed run's scratch folder left
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=LEFTOVER_SUFFIX, dir=parent))
    fd = _lock(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def commit(staged: Path, target: Path) -> None:
    """Rename a fully written file over its target (one atomic step on POSIX)."""
    os.replace(staged, target)


__all__ = ["LEFTOVER_MIN_AGE_S", "LEFTOVER_SUFFIX", "atomic_dir", "atomic_path", "clean_leftovers",
           "commit", "current_umask", "held", "is_leftover", "scratch_dir"]
