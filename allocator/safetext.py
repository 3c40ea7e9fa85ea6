"""No live formula anywhere the engine writes: one rule for every workbook and CSV writer.

A spreadsheet may run a cell whose text begins with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula (OWASP "CSV injection"). The rule, in two parts:

* ids (program, region, fund, rule, round ids, period labels, tranche names, tags) that begin
  with one of these characters are refused at input, with the cell named (cells.parse_id);
* free text (names, descriptions, variant names, messages) is written into workbooks as a typed
  text cell, never a formula (`append_text_row`), and into CSV files with a leading single quote
  (`csv_text`), which spreadsheets show as text and `csv_value` removes again on reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Excel holds at most this many characters in a cell and reports a longer one as damaged.
CELL_TEXT_MAX = 32_767
CUT_MARK = " [...]"


def cell_text(text: str) -> str:
    """Text that fits one spreadsheet cell: past CELL_TEXT_MAX characters, cut and marked."""
    if len(text) <= CELL_TEXT_MAX:
        return text
    return text[:CELL_TEXT_MAX - len(CUT_MARK)] + CUT_MARK


def starts_like_formula(text: object) -> bool:
    """Whether a spreadsheet could take this text for a formula."""
    return isinstance(text, str) and text.startswith(FORMULA_START)


def csv_text(value: Any) -> Any:
    """A value for a CSV cell: text that starts like a formula gets a leading single quote."""
    return "'" + value if starts_like_formula(value) else value


def csv_value(text: str) -> str:
    """The text `csv_text` was given (its quote removed)."""
    return text[1:] if text.startswith("'") and starts_like_formula(text[1:]) else text


def append_text_row(ws: Any, values: Sequence[Any]) -> None:
    """Append a row to an openpyxl worksheet with every string a literal text cell.

    openpyxl stores a string beginning with `=` as a formula and `#N/A` as an error value;
    typing the cell as text keeps what the round said.
    """
    ws.append(list(values))
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str):
            cell.value = cell_text(cell.value)
            cell.data_type = "s"
