"""Inputs a hostile review found mishandled, beyond the corpus (tests/hostile/corpus.py):
a valid workbook whose file name says it is another kind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allocator.validate import load_round
from tests.hostile.corpus import base


@pytest.mark.parametrize("suffix", [".xls", ".XLS", ".xlsb", ".ods"])
def test_an_xlsx_named_as_another_kind_is_read_by_its_content(tmp_path: Path, suffix: str) -> None:
    """calamine picks its reader by the name; the bytes are an .xlsx (sniffed), so they count."""
    right = tmp_path / "round.xlsx"
    base()(right)
    wrong = tmp_path / f"round{suffix}"
    shutil.copy(right, wrong)
    assert load_round(wrong).round == load_round(right).round
