"""The chain of records of one round: how records are named, ordered and linked.

Every record of a round (a decision record, or a settlement of one) is a folder
`<records>/<round_id>/<id>/` holding `manifest.json`. Ids start with a UTC timestamp, so the
folders sort in the order they were written. A record's digest is the SHA-256 of its
`manifest.json` bytes (the manifest lists every other file's digest), and each manifest names
the digest of the round's previous record in `previous` (null for the first), so removing,
inserting or rewriting a record breaks the chain. A settlement's manifest also names the record
it settles in `settles`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from allocator.atomic import is_leftover
from allocator.manifest import ManifestError, read_manifest
from allocator.signing import MANIFEST


def record_digest(folder: Path) -> str:
    """SHA-256 of a record's manifest.json: the digest later records chain to."""
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()


def round_records(round_dir: Path) -> list[Path]:
    """The round's record folders in the order they were written (staging leftovers skipped)."""
    round_dir = Path(round_dir)
    if not round_dir.is_dir():
        return []
    return sorted(p for p in round_dir.iterdir()
                  if p.is_dir() and not is_leftover(p) and (p / MANIFEST).is_file())


@contextlib.contextmanager
def writing(round_dir: Path) -> Iterator[None]:
    """Hold the round's chain lock while a record is chained and renamed into place.

    Two runs of one round at the same moment would otherwise both chain to the same latest
    record (a fork `verify --chain` reports as an inserted record). The lock is an `flock` on
    the round's folder itself (no file is added), released when the writer finishes or dies.
    """
    round_dir = Path(round_dir)
    round_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(round_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def settled_digest(manifest: dict) -> str | None:
    """The digest of the record a settlement settles (`settles.record_digest`)."""
    settles = manifest.get("settles")
    digest = settles.get("record_digest") if isinstance(settles, dict) else settles
    return digest if isinstance(digest, str) else None


def previous_digest(round_dir: Path) -> str | None:
    """The digest a new record of this round chains to: that of its latest record, if any."""
    records = round_records(round_dir)
    return record_digest(records[-1]) if records else None


# --- walking a chain ---------------------------------------------------------------------------
@dataclass
class ChainReport:
    """What `walk_chain` found: the chain holds when `problems` is empty."""

    folder: Path
    lines: list[str] = field(default_factory=list)  # one line per record, in order
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems


def chain_folders(folder: Path) -> list[Path]:
    """The round folders under `folder`: itself if it holds records, else its sub-folders that do.

    `verify --chain` takes a round's folder (`<records>/<round_id>`) or a records folder holding
    several rounds; each round is its own chain.
    """
    folder = Path(folder)
    if round_records(folder):
        return [folder]
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and not is_leftover(p)
            and round_records(p)] if folder.is_dir() else []


def _manifest(folder: Path) -> dict | None:
    """The record's manifest, or None where `read_manifest` refuses it (the record check says
    why)."""
    try:
        return read_manifest(folder)
    except ManifestError:
        return None


def walk_chain(round_dir: Path, check_record=None) -> ChainReport:
    """Walk one round's records in order; name a removed, inserted, reordered or rewritten one.

    Each manifest's `previous` must be the digest of the record before it. An older-format
    record (no `previous` key) is accepted as the start of the chain. `check_record(folder)`
    returns a record's own findings (its files against its manifest, or a full re-solve) as
    (problems, warnings, notes).
    """
    round_dir = Path(round_dir)
    out = ChainReport(round_dir)
    records = round_records(round_dir)
    digests = [record_digest(r) for r in records]
    by_digest = {d: i for i, d in enumerate(digests)}
    names = [r.name for r in records]
    chained_seen = False
    for i, rec in enumerate(records):
        label = f"{round_dir.name}/{rec.name}"
        try:
            manifest: dict | None = read_manifest(rec)
        except ManifestError as exc:
            manifest, unreadable = None, str(exc)
        kind = (manifest or {}).get("kind", "decision (older format)")
        head = f"{label} [{kind}] digest {digests[i][:16]}"
        if manifest is None:
            out.problems.append(f"{label}: {unreadable}")
            out.lines.append(f"{head}: unreadable manifest")
            continue
        if check_record is not None:
            problems, warnings, notes = check_record(rec)
            out.problems += [f"{label}: {p}" for p in problems]
            out.warnings += [f"{label}: {w}" for w in warnings]
            head += "".join(f"; {n}" for n in notes)
        if "settles" in manifest:
            settles = settled_digest(manifest)
            if settles not in by_digest:
                out.problems.append(f"{label}: settles record {str(settles)[:16]}..., which is not in "
                                    "this round (removed, or rewritten after it was settled)")
            else:
                head += f"; settles {names[by_digest[settles]]}"
        if "previous" not in manifest:
            if chained_seen:
                out.problems.append(f"{label}: an older-format record (no previous) after chained "
                                    "records: it cannot be placed in the chain (inserted?)")
            else:
                out.lines.append(f"{head}: older-format record without previous, accepted as the "
                                 "chain's start")
            continue
        chained_seen = True
        prev = manifest.get("previous")
        problem = _link_problem(i, prev, manifest, records, digests, by_digest) \
            if prev is None or isinstance(prev, str) else \
            f"previous is {_json_kind(prev)}, not a record's digest: the link is broken"
        if problem:
            out.problems.append(f"{label}: {problem}")
            out.lines.append(f"{head}: BROKEN LINK")
        else:
            out.lines.append(f"{head}: " + ("first record of the round" if prev is None
                                            else f"follows {names[i - 1]}"))
    out.problems += _forks(records, digests)
    if not records:
        out.problems.append(f"{round_dir}: no records (no folder with a manifest.json)")
    return out


def _json_kind(value: object) -> str:
    """What a JSON value is, in words: `a list`, `an object`, `a number`."""
    kind = {list: "a list", dict: "an object", bool: "true or false", str: "a string"}
    return kind.get(type(value), "a number")


def _forks(records: list[Path], digests: list[str]) -> list[str]:
    """Records that copy another, or claim the same previous record as another: inserted ones.

    Of the records that follow the same one, the genuine one is the one a later record chains
    to (or the latest); the others were inserted.
    """
    names = [r.name for r in records]
    problems = []
    first_of: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d in first_of:
            problems.append(f"{records[0].parent.name}/{names[i]}: an exact copy of {names[first_of[d]]} "
                            "(the same manifest): inserted")
        first_of.setdefault(d, i)
    prevs = [(_manifest(r) or {}).get("previous") for r in records]
    prevs = [p if isinstance(p, str) else None for p in prevs]  # a broken link is named apart
    pointed = {p for p in prevs if p is not None}
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prevs):
        if isinstance(p, str) and digests[i] not in [digests[k] for k in groups.get(p, [])]:
            groups.setdefault(p, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        genuine = [i for i in members if digests[i] in pointed or i == len(records) - 1]
        keep = genuine[0] if genuine else members[0]
        for i in members:
            if i != keep:
                problems.append(f"{records[0].parent.name}/{names[i]}: claims the same previous "
                                f"record as {names[keep]}, and no later record chains to it: inserted")
    return problems


def _link_problem(i: int, prev: object, manifest: dict, records: list[Path], digests: list[str],
                  by_digest: dict[str, int]) -> str | None:
    """Why record i does not follow record i-1, or None when it does."""
    names = [r.name for r in records]
    if i > 0 and prev == digests[i - 1]:
        return None
    if prev is None:
        if i == 0:
            return None
        return (f"claims to be the round's first record (previous is null), but "
                f"{', '.join(names[:i])} come(s) before it: it, or they, were inserted")
    if prev in by_digest:
        j = by_digest[prev]
        if j < i - 1:
            skipped = ", ".join(names[j + 1:i])
            return f"chains to {names[j]}, skipping {skipped}: inserted into the chain"
        return (f"chains to {names[j]}, which comes after it: the records are out of order "
                "(a folder was renamed or moved)")
    if i == 0:
        named = manifest.get("previous_run")
        return (f"its previous record (digest {str(prev)[:16]}..."
                + (f", run {named}" if named else "") + ") is missing: the round's earlier "
                "record(s) were removed")
    named = manifest.get("previous_run")
    if isinstance(named, str) and named in names:
        now = digests[names.index(named)]
        return (f"chains to {named} with digest {str(prev)[:16]}..., but that record's manifest "
                f"now has digest {now[:16]}...: {named} was rewritten")
    if isinstance(named, str):
        return (f"chains to record {named} (digest {str(prev)[:16]}...), which is not here: it "
                "was removed")
    return (f"chains to a record with digest {str(prev)[:16]}... that is not here: the record "
            f"before it was removed, or {names[i - 1]} was rewritten (its digest is now "
            f"{digests[i - 1][:16]}...)")
