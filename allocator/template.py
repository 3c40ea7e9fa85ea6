"""Writing round workbooks: the blank template, and rounds built from Python data.

The template is the input contract (DESIGN.md, version 1) as a workbook: every sheet and
header, an Instructions sheet, and drop-down lists for the enumerated columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from allocator.atomic import atomic_path
from allocator.round import OUTCOME_COLUMNS, EquityObjective, FundKind, Measure, Stage

HEADERS: dict[str, list[str]] = {
    "Round": ["key", "value"],
    "Regions": ["region_id", "name", "jurisdiction", "population", "rural"],
    "Funds": ["fund_id", "name", "kind", "owner", "cofinancing_cap", "eligible", "carry_over"],
    "Budgets": ["fund_id", "period", "amount"],
    "Contributions": ["fund_id", "jurisdiction", "amount"],
    "Programs": ["program_id", "name", "sector", "stage", "regions", "cost_per_trainee",
                 "max_trainees", "min_trainees", "start_period", "end_period", "targets",
                 "pilot_of", *OUTCOME_COLUMNS],
    "Performance": ["program_id", "metric", "target", "achieved"],
    "Tranches": ["fund_kind", "fund_id", "tranche", "share", "due", "condition"],
    "Objective": ["metric", "weight"],
    "Rules": ["rule_id", "description", "measure", "select", "each", "relative_to", "op",
              "value", "penalty"],
}
ROUND_KEYS = ["round_id", "title", "currency", "periods", "rounding_unit", "equity_objective",
              "outcome_tolerance", "time_limit_s", "mip_gap", "robust_gamma", "robust_level"]
CHOICES: dict[tuple[str, str], list[str]] = {
    ("Funds", "kind"): [k.value for k in FundKind],
    ("Funds", "carry_over"): ["yes", "no"],
    ("Regions", "rural"): ["yes", "no"],
    ("Programs", "stage"): [s.value for s in Stage],
    ("Tranches", "fund_kind"): [k.value for k in FundKind],
    ("Rules", "measure"): [m.value for m in Measure],
    ("Rules", "op"): [">=", "<=", "="],
}
INSTRUCTIONS = [
    "How to fill in a round workbook (input contract, version 1)",
    "",
    "Round: one key per row (round_id is required; periods are comma-separated labels).",
    "Regions: one row per region; population > 0; rural yes/no.",
    "Funds: kind is joint, public, employer, learner_support or performance; owner is a "
    "jurisdiction or 'joint'; cofinancing_cap between 0 and 1; eligible is a filter.",
    "Budgets: one row per fund and period; a missing row means 0.",
    "Contributions: who paid what into each joint fund.",
    "Programs: regions is a comma-separated list of region ids; min_trainees > 0 means "
    "all-or-nothing; rates are between 0 and 1.",
    "Uncertainty (optional): a Programs column <metric>_se (e.g. employment_rate_se) is the "
    "standard error of that expected outcome per trainee; Round robust_gamma (how many programs "
    "may fall short at once, 0 = none) and robust_level (by how many standard errors) make the "
    "allocation hold up when they do.",
    "Performance (optional): measured results of earlier rounds.",
    "Tranches (optional): how each fund kind or fund pays out; shares of a fund add up to 1.",
    "Objective: the weight of each outcome metric.",
    "Rules: measure is amount, share, share_within, per_capita or contribution_share; "
    "filters look like sector=digital|green; target!=youth.",
    "",
    "Ids and period labels are text. Numbers should be stored as numbers.",
    "Header names are case-insensitive; extra columns are kept as attributes for filters.",
]


def write_template(path: str | Path) -> Path:
    """Write the blank input workbook with instructions and drop-down lists."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Instructions"
    for line in INSTRUCTIONS:
        ws.append([line])
    ws["A1"].font = Font(bold=True, size=14)
    ws.column_dimensions["A"].width = 120
    for sheet, headers in HEADERS.items():
        ws = wb.create_sheet(sheet)
        _header(ws, headers)
        if sheet == "Round":
            for key in ROUND_KEYS:
                ws.append([key, None])
            dv = DataValidation(type="list", formula1='"' + ",".join(
                e.value for e in EquityObjective) + '"', allow_blank=True)
            ws.add_data_validation(dv)
            dv.add(f"B{ROUND_KEYS.index('equity_objective') + 2}")
        for (s, column), options in CHOICES.items():
            if s == sheet:
                letter = get_column_letter(headers.index(column) + 1)
                dv = DataValidation(type="list", formula1='"' + ",".join(options) + '"',
                                    allow_blank=True)
                ws.add_data_validation(dv)
                dv.add(f"{letter}2:{letter}5000")
    return _save(wb, Path(path))


def _header(ws, headers: Sequence[str]) -> None:
    _append(ws, headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for i, h in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(12, len(h) + 4)
    ws.freeze_panes = "A2"


def write_round_workbook(path: str | Path, sheets: Mapping[str, Any]) -> Path:
    """Write a round workbook from {sheet: rows}; rows are dicts, or (key, value) for Round.

    Values are written as given (numbers as numbers, every string as text, even one starting
    with `=`; wrap a value in `Formula` to write a formula); for tests and generators.
    """
    wb = Workbook()
    wb.remove(wb.active)
    for sheet, rows in sheets.items():
        ws = wb.create_sheet(sheet)
        if sheet == "Round" and isinstance(rows, Mapping):
            _append(ws, ["key", "value"])
            for key, value in rows.items():
                _append(ws, [key, _cell(value)])
            continue
        rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
        headers = list(HEADERS.get(sheet, []))
        for row in rows:
            for key in row:
                if key not in headers:
                    headers.append(key)
        if rows:
            used = {k for row in rows for k in row}
            headers = [h for h in headers if h in used]
        _header(ws, headers)
        for row in rows:
            _append(ws, [_cell(row.get(h)) for h in headers])
    return _save(wb, Path(path))


class Formula(str):
    """A cell value to write as an Excel formula (with no saved result), e.g. Formula("=A1")."""

    __slots__ = ()


def _append(ws, values: Sequence[Any]) -> None:
    """Append a row; every string stays text, only a `Formula` becomes a formula.

    openpyxl turns a string starting with `=` into a formula and `#N/A` into an error value;
    a round may hold names like `=HYPERLINK(...)`, which must arrive as the text typed.
    """
    ws.append([str(v) if isinstance(v, Formula) else v for v in values])
    for cell, value in zip(ws[ws.max_row], values, strict=False):
        if isinstance(value, Formula):
            cell.data_type = "f"
        elif isinstance(cell.value, str):
            cell.data_type = "s"


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return value


def _save(wb: Workbook, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path
