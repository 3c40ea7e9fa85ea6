"""The decision record committed in models/ re-runs to the same allocation on this machine."""

from __future__ import annotations

from pathlib import Path

from allocator.record import verify_record

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_committed_example_record_verifies():
    records = sorted(p.parent for p in MODELS.glob("*/*/manifest.json"))
    assert records, "models/ must hold the example round's decision record"
    for record in records:
        result = verify_record(record)
        assert result.verified, (record, result.problems)
