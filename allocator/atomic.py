"""Writing files and folders so that a failed or killed run leaves the previous state intact.

Work in progress lives beside its target under a hidden name, `.<target name>.<random>.tmp`,
and is renamed over the target only when complete. A run killed mid-write (SIGKILL, power loss)
can leave such a leftover behind; it is hidden, harmless, never renamed into place later, and
`is_leftover` tells it apart from a finished file or folder, so nothing reads it as a report or
a decision record. Finished files get the permissions the user's umask implies (as `open` would
give them), not the 0600/0700 of `tempfile`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

LEFTOVER_SUFFIX = ".tmp"


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
    os.close(fd)
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


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; rename it to `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=LEFTOVER_SUFFIX,
                                dir=target.parent))
    try:
        yield tmp
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def commit(staged: Path, target: Path) -> None:
    """Rename a fully written file over its target (one atomic step on POSIX)."""
    os.replace(staged, target)


__all__ = ["LEFTOVER_SUFFIX", "atomic_dir", "atomic_path", "commit", "current_umask",
           "is_leftover"]
