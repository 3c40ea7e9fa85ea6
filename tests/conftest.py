"""Shared fixtures. Append new fixtures at the end; several test files use these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from allocator.round import Round
from allocator.template import write_round_workbook
from allocator.validate import load_round


@pytest.fixture
def make_round(tmp_path: Path) -> Callable[[Mapping[str, Any]], Round]:
    """Write {sheet: rows} as a round workbook and read it back through the validating reader."""
    counter = iter(range(1_000_000))

    def build(sheets: Mapping[str, Any]) -> Round:
        path = write_round_workbook(tmp_path / f"round_{next(counter)}.xlsx", sheets)
        return load_round(path).round

    return build
