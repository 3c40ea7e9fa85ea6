"""The files of a record, decision or settlement: ids, digests, and what verifying found.

Shared by `record` (decision records) and `settle` (settlement records), below both.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from allocator.signing import SIGNATURE_FILE

ALLOCATION_COLUMNS = ["program_id", "region_id", "fund_id", "period", "amount"]


def new_run_id(input_digest: str, after: str | None = None) -> str:
    """A sortable, unique-enough run id: UTC time to the microsecond plus the input digest.

    `after` is the name of the round's latest record: the new id sorts after it even when the
    clock has gone back, since the chain is read in the order of these names.
    """
    return f"{id_stamp(after)}Z-{input_digest[:8]}"


def id_stamp(after: str | None = None) -> str:
    """`YYYYMMDDTHHMMSS` plus six digits of microseconds: now, or 1 µs after `after`'s stamp."""
    # One clock reading: seconds and microseconds read separately can straddle a second and
    # give a stamp a second too early, sorting before the run that came just before.
    micros = time.time_ns() // 1000
    if after is not None and (earlier := _stamp_micros(after)) is not None:
        micros = max(micros, earlier + 1)
    seconds, rest = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"{rest:06d}"


def _stamp_micros(name: str) -> int | None:
    """Microseconds since the epoch that a record id starts with, or None if it does not."""
    try:
        seconds = calendar.timegm(time.strptime(name[:15], "%Y%m%dT%H%M%S"))
    except ValueError:
        return None
    rest = name[15:21]
    return seconds * 1_000_000 + int(rest) if len(rest) == 6 and rest.isdigit() else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Verification:
    """The outcome of verifying a record: VERIFIED when `problems` is empty."""

    record: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was checked and found in order

    @property
    def verified(self) -> bool:
        return not self.problems


def check_digests(folder: Path, files: dict[str, str], out: Verification) -> None:
    """Every file the manifest lists is there, unchanged and inside the record; nothing else is."""
    # signature.json signs manifest.json, so the manifest cannot list it
    present = {p.name for p in folder.iterdir()
               if p.is_file() and p.name not in ("manifest.json", SIGNATURE_FILE)}
    for name, expected in sorted(files.items()):
        if not _plain_name(name):  # a manifest must not make verify read outside the record
            out.problems.append(f"manifest.json lists {name!r}, which is not a file name inside the record")
            continue
        path = folder / name
        if path.is_symlink():  # a record holds its own files; a link can point anywhere
            out.problems.append(f"{name}: a symbolic link, not a file of the record")
        elif not path.is_file():
            out.problems.append(f"{name}: listed in the manifest but missing")
        elif sha256_file(path) != expected:
            out.problems.append(f"{name}: its SHA-256 differs from the manifest (the file was changed)")
    for name in sorted(present - set(files)):
        out.problems.append(f"{name}: not listed in the manifest (added after the run)")


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name \
        and "\\" not in name and "\0" not in name
