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

import hashlib
from pathlib import Path

from allocator.atomic import is_leftover

MANIFEST = "manifest.json"


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


def previous_digest(round_dir: Path) -> str | None:
    """The digest a new record of this round chains to: that of its latest record, if any."""
    records = round_records(round_dir)
    return record_digest(records[-1]) if records else None
