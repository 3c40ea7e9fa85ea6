"""The files of a record, decision or settlement: ids, digests, and what verifying found.

Shared by `record` (decision records) and `settle` (settlement records), below both.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from allocator.signing import MANIFEST, SIGNATURE_FILE

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


class ManifestError(ValueError):
    """A manifest.json that cannot be read as one unambiguous JSON object."""


def read_manifest(folder: Path) -> dict:
    """A record's manifest.json as a dict: the one reader for everything that verifies records.

    Refused (ManifestError): a missing manifest, one that is a link (a record holds its own
    files), text that is not UTF-8 JSON, anything but an object, and a key given twice at any
    depth: JSON readers disagree on which copy wins, so a manifest could list one set of files
    to this reader and another to the next.
    """
    path = Path(folder) / MANIFEST
    if path.is_symlink():
        raise ManifestError("manifest.json is a symbolic link, not a file of the record")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except OSError as exc:
        raise ManifestError(f"manifest.json cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ManifestError("manifest.json is not UTF-8 text") from None
    except ManifestError:
        raise
    except ValueError as exc:
        raise ManifestError(f"manifest.json is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest.json is not a JSON object (a {type(data).__name__})")
    return data


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise ManifestError(f"manifest.json gives the key {key!r} twice (ambiguous: which "
                                "one counts depends on the reader)")
        seen.add(key)
    return dict(pairs)


def check_digests(folder: Path, files: dict[str, str], out: Verification) -> None:
    """Every file the manifest lists is there, unchanged and inside the record; nothing else is.

    Everything in the folder counts, not only plain files: a sub-folder, a link (even one
    pointing nowhere) or a FIFO left beside the listed files is something added after the run.
    """
    out.problems.extend(link_problems(folder))
    # signature.json signs manifest.json, so the manifest cannot list it
    present = {p.name: p for p in folder.iterdir() if p.name not in (MANIFEST, SIGNATURE_FILE)}
    for name, expected in sorted(files.items()):
        if not plain_name(name):  # a manifest must not make verify read outside the record
            out.problems.append(f"manifest.json lists {name!r}, which is not a file name inside the record")
            continue
        path = folder / name
        if path.is_symlink():  # a record holds its own files; a link can point anywhere
            out.problems.append(f"{name}: a symbolic link, not a file of the record")
        elif not path.exists():
            out.problems.append(f"{name}: listed in the manifest but missing")
        elif not path.is_file():
            out.problems.append(f"{name}: listed in the manifest, but {_what(path)}, not a file")
        elif sha256_file(path) != expected:
            out.problems.append(f"{name}: its SHA-256 differs from the manifest (the file was changed)")
    for name in sorted(set(present) - set(files)):
        what = "" if present[name].is_file() and not present[name].is_symlink() \
            else f" ({_what(present[name])})"
        out.problems.append(f"{name}: not listed in the manifest (added after the run){what}")


def check_output_digest(folder: Path, name: str, manifest: dict, out: Verification,
                        what: str) -> None:
    """The record's output file (`allocation.csv`, `settlement.csv`) against the manifest's
    output_digest; `what` names its content in the message ("the allocation")."""
    path = folder / name
    if path.is_file() and not path.is_symlink() \
            and sha256_file(path) != manifest.get("output_digest"):
        out.problems.append(f"{name}: its SHA-256 differs from the manifest's output_digest "
                            f"({what} was changed)")


def link_problems(folder: Path) -> list[str]:
    """The record folder, its manifest.json or its signature.json given as a symbolic link.

    A record holds its own files: a linked folder or manifest can be swapped for another one
    without touching the round's folder (as a linked stage file is refused).
    """
    folder = Path(folder)
    problems = []
    if folder.is_symlink():
        problems.append(f"the record folder {folder.name} is a symbolic link (to "
                        f"{os.readlink(folder)}), not a folder of the round")
    for name in (MANIFEST, SIGNATURE_FILE):
        if (folder / name).is_symlink():
            problems.append(f"{name}: a symbolic link, not a file of the record")
    return problems


def _what(path: Path) -> str:
    """What a directory entry that is not a plain file is, in words."""
    if path.is_symlink():
        return "a symbolic link" + ("" if path.exists() else " to nothing")
    if path.is_dir():
        return "a folder"
    return "not a regular file (a FIFO, socket or device)" if path.exists() else "missing"


def check_place(folder: Path, manifest: dict, out: Verification) -> None:
    """The manifest's round_id names the round folder the record lies in; its run_id its own.

    Records live at `<records>/<round_id>/<run_id>/`: a record copied into another round's
    folder (an old decision replayed as a new round's, or a foreign round's record chained in)
    is named by its round_id. A run_id that differs is a warning: a renamed folder also breaks
    the order the chain is read in, which `verify --chain` names.
    """
    where = Path(os.path.abspath(folder))  # `verify .` inside a record: the real names
    round_id = manifest.get("round_id")
    if not isinstance(round_id, str):
        out.problems.append(f"manifest.json: round_id is {round_id!r}, not a round's id")
    elif round_id != where.parent.name:
        out.problems.append(f"manifest.json: round_id {round_id!r}, but the record lies in the "
                            f"round folder {where.parent.name!r} (copied from another round?)")
    run_id = manifest.get("run_id")
    if run_id != where.name:
        out.warnings.append(f"the record's folder is named {where.name!r}, its manifest says run "
                            f"{run_id!r} (was the folder renamed?)")


def plain_name(name: object) -> bool:
    """One file or folder name inside the record's or round's folder: no path, no `..`."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name \
        and "\\" not in name and "\0" not in name


def first_difference(recorded: bytes, expected: bytes) -> tuple[int, str, str]:
    """(line number, recorded line, expected line) where two texts first differ, as text.

    Lines keep their ends, so a CRLF or a missing last line end shows; the ordinary LF both
    have is left out. A text that ends first reads `(end of file)`.
    """
    a, b = recorded.splitlines(keepends=True), expected.splitlines(keepends=True)
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    got = a[n] if n < len(a) else b""
    want = b[n] if n < len(b) else b""
    if _lf_or_end(got) and _lf_or_end(want):
        got, want = got.removesuffix(b"\n"), want.removesuffix(b"\n")
    return n + 1, _line_text(got), _line_text(want)


def _lf_or_end(line: bytes) -> bool:
    return not line or (line.endswith(b"\n") and not line.endswith(b"\r\n"))


def _line_text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace") if line else "(end of file)"
